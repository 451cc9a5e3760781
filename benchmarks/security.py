"""Every attack of an untrusted change that Diffie defends against, run for real; counts them.

    python -m benchmarks.security

1. Browser attacks (``tests/security/attacks.py``), one flow each, in real Chromium against a
   real "internal service" on another loopback port holding a canary secret. An attack is
   *blocked* when no HTTP request reached the service and the attempt was recorded (a
   ``blocked_request``, or a navigation Chromium refused); it *leaked* when the canary appears
   in anything Diffie wrote (captures, screenshots, element maps, traces).
2. Every other attack is a test of ``tests/security/`` (spec limits, webhooks, tokens, signed
   links, fork policy, QEMU confinement, ...): run by pytest here, one attack per test;
   a passing test is a blocked attack, a failing one a leak (its defence did not hold).

Prints one line per attack and last ``security: attacks=<n> blocked=<n> leaked=<n>``
(``leaked`` must be 0). Exit status 0 only when nothing leaked.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

from diffie.artifacts import ArtifactDir
from diffie.browser import BrowserRunner
from diffie.compare.logs import log_findings
from diffie.config import Settings
from diffie.spec import parse_spec
from tests.security.attacks import ATTACKS, AttackApp, CanaryServer, attack_spec, leaks

REPO = Path(__file__).resolve().parents[1]
CLOCK = datetime(2024, 5, 6, 7, 8, 9, tzinfo=UTC)
# tests that the browser attacks above already count (they drive the same attack pages)
BROWSER_TESTS = ("test_browser_confinement.py", "test_leaks_end_to_end.py")


def browser_attacks(tmp: Path) -> list[tuple[str, bool, bool]]:
    results: list[tuple[str, bool, bool]] = []
    with CanaryServer() as secret:
        canary_file = tmp / "passwd"
        canary_file.write_text(f"root:x:0:0:{secret.canary}:/root:/bin/bash\n")
        with AttackApp(secret, canary_file) as app, \
                BrowserRunner(Settings(data_dir=tmp / "data")) as runner:
            for attack in ATTACKS:
                out = tmp / attack.name
                requests_before = len(secret.paths)
                [capture] = runner.run_all(parse_spec(attack_spec((attack,))), app.url, "head",
                                           ArtifactDir(out), clock=CLOCK)
                (out / "capture.json").write_text(json.dumps(capture.model_dump()))
                reached = len(secret.paths) > requests_before
                recorded = any(f.kind == "blocked_request" for f in log_findings(None, capture))
                local_scheme = attack.name.split("-")[0] in ("file", "data", "chrome")
                leaked = bool(leaks(secret.canary, out))
                blocked = not reached and not leaked and (recorded or local_scheme)
                results.append((f"browser/{attack.name}: {attack.what}", blocked, leaked))
                print(f"  {'blocked' if blocked else 'LEAKED' if leaked else 'NOT BLOCKED'}  "
                      f"browser/{attack.name}", flush=True)
    return results


def suite_attacks(tmp: Path) -> list[tuple[str, bool, bool]]:
    """The other tests of tests/security, one attack each (JUnit XML gives each outcome)."""
    junit = tmp / "security.xml"
    deselect = [arg for name in BROWSER_TESTS for arg in ("--ignore", f"tests/security/{name}")]
    subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                    f"--junitxml={junit}", "tests/security", *deselect],
                   cwd=REPO, check=False, stdout=subprocess.DEVNULL)
    if not junit.is_file():
        return []
    import xml.etree.ElementTree as ET

    results: list[tuple[str, bool, bool]] = []
    for case in ET.parse(junit).getroot().iter("testcase"):
        if case.find("skipped") is not None:
            continue
        failed = case.find("failure") is not None or case.find("error") is not None
        name = f"{case.get('classname', '').rsplit('.', 1)[-1]}/{case.get('name')}"
        results.append((name, not failed, failed))
        print(f"  {'LEAKED' if failed else 'blocked'}  {name}", flush=True)
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--browser-only", action="store_true", help="skip the pytest attacks")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="diffie-security-") as tmp_name:
        tmp = Path(tmp_name)
        print("browser attacks (real Chromium, canary service on loopback):", flush=True)
        results = browser_attacks(tmp)
        if not args.browser_only:
            print("other attacks (tests/security):", flush=True)
            results += suite_attacks(tmp)
    blocked = sum(1 for _n, b, _l in results if b)
    leaked = sum(1 for _n, _b, leak in results if leak)
    print(f"security: attacks={len(results)} blocked={blocked} leaked={leaked}")
    return 0 if leaked == 0 and blocked == len(results) else 1


if __name__ == "__main__":
    sys.exit(main())
