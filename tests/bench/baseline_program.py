"""Baseline for evaluate_stacks.py: a bare Pulumi program that registers as many plain
docker.Container resources as the real program declares, with no settings, catalog or
components. What it costs is what Pulumi's own registration costs under mocks."""

import os

import pulumi_docker as docker

for index in range(int(os.environ["BASELINE_RESOURCES"])):
    docker.Container(f"container-{index}", image="busybox@sha256:" + "0" * 64, name=f"c{index}")
