"""`--image`: a tag, a digest or both, checked with the catalog's own grammar."""

import pytest

from components.settings import read_stack
from napdms_ops.release.versions import ReleaseError, Version, parse_image

DIGEST = "sha256:" + "ab" * 32
CURRENT = Version("1.0.0")


def test_a_tag_keeps_no_digest():
    assert parse_image(read_stack("dev"), "gitea", "1.24.7", CURRENT) == Version("1.24.7")


def test_a_digest_alone_keeps_the_current_tag():
    assert parse_image(read_stack("dev"), "gitea", DIGEST, CURRENT) == Version("1.0.0", DIGEST)


def test_a_tag_with_digest_sets_both():
    parsed = parse_image(read_stack("prod"), "gitea", f"1.24.7@{DIGEST}", CURRENT)
    assert parsed == Version("1.24.7", DIGEST)


@pytest.mark.parametrize("image", ["latest", "-x", "1.0@sha256:abc", "1.0@md5:00"])
def test_a_malformed_image_names_stack_service_and_the_accepted_forms(image):
    with pytest.raises(ReleaseError, match=r"^dev: gitea: --image .*TAG@sha256:<64 hex>$"):
        parse_image(read_stack("dev"), "gitea", image, CURRENT)


@pytest.mark.parametrize("stack", ["staging", "prod"])
def test_staging_and_prod_refuse_a_tag_without_digest_with_the_fix(stack):
    with pytest.raises(ReleaseError, match=r"docker buildx imagetools inspect .*gitea:1.24.7`$"):
        parse_image(read_stack(stack), "gitea", "1.24.7", CURRENT)


def test_a_version_prints_as_image_takes_it():
    assert (str(Version("1.2")), str(Version("1.2", DIGEST))) == ("1.2", f"1.2@{DIGEST}")


def test_a_postgresql_major_upgrade_is_refused_with_the_procedure():
    current = Version("17.6-bookworm")
    with pytest.raises(ReleaseError, match=r"^dev: postgres: .*PostgreSQL 17 -> 18 .*README"):
        parse_image(read_stack("dev"), "postgres", "18.1-bookworm", current)


def test_a_postgresql_minor_upgrade_is_a_plain_deploy():
    current = Version("17.6-bookworm")
    parsed = parse_image(read_stack("dev"), "postgres", "17.7-bookworm", current)
    assert parsed == Version("17.7-bookworm")
