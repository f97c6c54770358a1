"""CrossGuard entry point: `pulumi preview --policy-pack policies --policy-pack-config
policies/config/<stack>.json`. Serves the analyzer on the port it prints, until stopped."""

from pack import PACK_NAME, policies
from pulumi_policy import EnforcementLevel, PolicyPack

PolicyPack(name=PACK_NAME, enforcement_level=EnforcementLevel.MANDATORY, policies=policies())
