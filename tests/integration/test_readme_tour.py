"""The README's tour runs start to end as written, against a fresh devnet of four.

The tour is not copied here: the test reads README.md and runs, in order, every ```bash block
of the "A tour of the CLI" section as one bash script (errexit, nounset, pipefail), in a fresh
directory that holds only the devnet's homes (`devnet/`) and the example files (`docs/examples`),
as a new clone would. The only changes are the addresses: the devnet gets free ports, so the
README's http://127.0.0.1:870N become the real ones and MEDLEDGER_NODE points at node0. A
command the README expects to be refused is followed by `|| echo "refused, as expected..."`:
the test checks that each of those refusals happened.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from node.devtools.cluster import Cluster

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]
SECTION = "## A tour of the CLI"


def tour_script(readme: str) -> str:
    """The ```bash blocks of the tour section, in order, joined into one script."""
    start = readme.index(SECTION)
    end = readme.find("\n## ", start + len(SECTION))
    section = readme[start:end if end != -1 else None]
    blocks = re.findall(r"^```bash\n(.*?)^```", section, flags=re.S | re.M)
    assert blocks, "the tour section has no ```bash block"
    return "\n".join(blocks)


def test_readme_tour_parses_into_a_script_that_makes_every_key_it_uses():
    script = tour_script((ROOT / "README.md").read_text())
    made = set(re.findall(r"keys new --out (\S+)", script)) | {"devnet/node0/institution.key", "devnet/node1/institution.key",
                                                              "devnet/node2/institution.key", "devnet/node3/institution.key"}
    used = set(re.findall(r"--(?:key|institution-key) (\S+)", script)) | set(re.findall(r"keys show (\S+?)\)", script))
    assert used <= made, f"keys used but never made by the tour: {used - made}"
    assert "medledger devnet up" not in script  # the devnet runs in its own terminal


def test_readme_tour_runs_start_to_end_as_written(tmp_path):
    script = tour_script((ROOT / "README.md").read_text())
    work = tmp_path / "clone"
    (work / "docs").mkdir(parents=True)
    shutil.copytree(ROOT / "docs" / "examples", work / "docs" / "examples")
    with Cluster.create(work / "devnet", 4) as cluster:
        cluster.start()
        cluster.wait_ready(60)
        urls = [n.api_url for n in cluster.nodes]
        for i, url in enumerate(urls):
            script = script.replace(f"http://127.0.0.1:{8700 + i}", url)
        assert "127.0.0.1:870" not in script, "the tour names a node the devnet does not have"
        env = {**os.environ, "MEDLEDGER_NODE": urls[0],
               "PATH": str(Path(sys.executable).parent) + os.pathsep + os.environ.get("PATH", "")}
        env.pop("MEDLEDGER_CA", None)
        r = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=str(work), env=env,
                           capture_output=True, text=True, timeout=900)
        assert r.returncode == 0, f"the tour stopped:\nstdout:\n{r.stdout[-4000:]}\nstderr:\n{r.stderr[-4000:]}"
        assert "Traceback" not in r.stderr
    expected_refusals = script.count('|| echo "refused, as expected')
    assert r.stdout.count("refused, as expected") == expected_refusals == 3, r.stdout
    assert "access denied: no_consent" in r.stderr and "access denied: consent_revoked" in r.stderr
    assert "already dispensed" in r.stderr.lower() or "dispensed already" in r.stderr.lower(), r.stderr
    # the pharmacist's copy of the prescription is what Dr A wrote
    written = json.loads((ROOT / "docs" / "examples" / "medicationrequest.json").read_text())
    assert json.loads((work / "rx.json").read_text())["medicationCodeableConcept"] == written["medicationCodeableConcept"]
    assert re.search(r"loaded \d+ records of 40 patients on devnet; 40 consents to study:DIAB-2027", r.stdout), r.stdout
    # what the tour promises is there: the decrypted record, the extract with its report
    assert json.loads((work / "b.json").read_text()) == json.loads((work / "obs.json").read_text())
    report = json.loads((work / "extract" / "report.json").read_text())
    assert report["patients_included"] > 0
    assert {p.name for p in (work / "extract").iterdir()} >= {"Patient.ndjson", "report.json"}
