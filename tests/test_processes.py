from __future__ import annotations

import subprocess
import sys
import time

import pytest

from ltfast.processes import alive


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="zombies are read from /proc")
def test_a_running_process_is_alive_and_a_killed_one_is_not_even_before_it_is_reaped():
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        assert alive(child.pid)
    finally:
        child.kill()
    deadline = time.monotonic() + 10
    while alive(child.pid):  # not reaped yet: only a zombie is left, which has ended
        assert time.monotonic() < deadline, "a killed, unreaped child still reads as alive"
        time.sleep(0.01)
    with open(f"/proc/{child.pid}/stat") as stat:
        assert stat.read().rsplit(")", 1)[1].split()[0] == "Z"  # it was the zombie case
    child.wait()
    assert not alive(child.pid)
