"""The ops kit: the alert rules pass Debian's promtool (checked, and unit-tested with series that fire
and series that do not), every alert is tested and documented, and every metric the rules and the
Grafana dashboard read is one a running server exposes."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from .conftest import ServerProcess
from .peers import SignalingClient

ROOT = Path(__file__).resolve().parent.parent
RULES = ROOT / "ops" / "prometheus" / "skyclass-alerts.yml"
RULE_TESTS = ROOT / "ops" / "prometheus" / "skyclass-alerts.test.yml"
DASHBOARD = ROOT / "ops" / "grafana" / "skyclass.json"
PROMTOOL = shutil.which("promtool") or "/usr/bin/promtool"  # Debian's prometheus (.ci/run installs it)
# The QoE gauges come from pupils' reports, which a bare server has none of.
FROM_REPORTS = re.compile(r"skyclass_qoe_")
METRIC = re.compile(r"(?<![:\w])skyclass_[a-z0-9_]+(?![:\w])")  # not a recording rule's level:name:op


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    if not Path(PROMTOOL).exists():
        pytest.fail("promtool is not installed: apt-get install prometheus (see .ci/run)")
    return subprocess.run([PROMTOOL, *args], capture_output=True, text=True, cwd=RULES.parent, timeout=120)


def rules() -> list[dict[str, Any]]:
    return [rule for group in yaml.safe_load(RULES.read_text())["groups"] for rule in group["rules"]]


def alerts() -> list[dict[str, Any]]:
    return [rule for rule in rules() if "alert" in rule]


def dashboard_exprs() -> list[str]:
    panels = json.loads(DASHBOARD.read_text())["panels"]
    return [target["expr"] for panel in panels for target in panel.get("targets", [])]


def test_promtool_checks_the_rules() -> None:
    result = promtool("check", "rules", RULES.name)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(rules())} rules found" in result.stdout


def test_promtool_unit_tests_pass() -> None:
    result = promtool("test", "rules", RULE_TESTS.name)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_every_alert_is_tested_firing_and_not_firing() -> None:
    fired: set[str] = set()
    silent: set[str] = set()
    for case in yaml.safe_load(RULE_TESTS.read_text())["tests"]:
        for check in case["alert_rule_test"]:
            (fired if check["exp_alerts"] else silent).add(check["alertname"])
    names = {rule["alert"] for rule in alerts()}
    assert names - fired == set(), "alerts never tested firing"
    assert names - silent == set(), "alerts never tested staying quiet"


def test_every_alert_says_how_bad_and_what_to_do() -> None:
    readme = (ROOT / "README.md").read_text()
    for rule in alerts():
        assert rule.get("for"), f"{rule['alert']} fires on a single evaluation"
        assert rule["labels"]["severity"] in {"critical", "warning"}, rule["alert"]
        assert rule["annotations"]["summary"] and rule["annotations"]["description"], rule["alert"]
        assert f"`{rule['alert']}`" in readme, f"{rule['alert']} is not in the README's Alerts section"


def exposed(server: ServerProcess) -> set[str]:
    text = httpx.get(server.url + "/metrics", timeout=5).text
    return {sample.name for family in text_string_to_metric_families(text) for sample in family.samples}


async def test_the_rules_and_the_dashboard_read_metrics_the_server_exposes(server: ServerProcess) -> None:
    # A join and a refused message: the counters labelled by role and by code have samples then.
    client = await SignalingClient.connect(server.ws_url)
    await client.join("alerts-metrics", server.token("alerts-metrics", "teacher", "Ms Li"))
    await client.send("{not json")
    assert (await client.expect("error"))["code"] == "bad_json"
    names = exposed(server)
    await client.close()
    used = {name for rule in rules() for name in METRIC.findall(rule["expr"])}
    shown = {name for expr in dashboard_exprs() for name in METRIC.findall(expr)}
    assert used and shown
    missing = {name for name in used | shown if not FROM_REPORTS.match(name)} - names
    assert missing == set(), "read by the rules or the dashboard, but not exposed"


def test_the_server_exposes_the_gauges_the_alerts_need(server: ServerProcess) -> None:
    assert server.metric("skyclass_store_up") == 1  # the embedded store always answers
    assert 0 < server.metric("skyclass_data_disk_free_ratio") <= 1
    assert server.metric("skyclass_data_disk_free_bytes") > 0
    assert server.metric("skyclass_live_lessons_teacher_away") == 0


def test_the_dashboard_queries_parse(tmp_path: Path) -> None:
    """promtool parses each panel's query (Grafana's variables given a value)."""
    exprs = [e.replace("$__rate_interval", "5m").replace("$instance", ".*") for e in dashboard_exprs()]
    checked = {
        "groups": [
            {"name": "dashboard", "rules": [{"record": f"dashboard:q{i}", "expr": e} for i, e in enumerate(exprs)]}
        ]
    }
    path = tmp_path / "dashboard-queries.yml"
    path.write_text(yaml.safe_dump(checked))
    result = promtool("check", "rules", str(path))
    assert result.returncode == 0, result.stdout + result.stderr
