"""quiet_native: silences native output, restores the descriptors, safe across threads."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap


def test_concurrent_quiet_blocks_leave_stdout_working() -> None:
    # Run in a child process so the test sees the real descriptors, not pytest's capture.
    script = textwrap.dedent(
        """
        import os, sys, threading
        from pocketml._native import quiet_native

        def noisy():
            for _ in range(200):
                with quiet_native():
                    os.write(1, b"native noise\\n")
                    with quiet_native():
                        os.write(2, b"nested noise\\n")

        threads = [threading.Thread(target=noisy) for _ in range(4)]
        for t in threads: t.start()
        for t in threads: t.join()
        print("still visible", flush=True)
        os.write(2, b"stderr visible\\n")
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=120,
        env=dict(os.environ),
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == "still visible\n"
    assert result.stderr == "stderr visible\n"
