import os
import subprocess
import sys
import textwrap

from stages.common.progress import progress

# What a stage does under a rule (`> {log} 2>&1`): many updates, a postfix now and then, a
# nested bar that is not left on screen.
SCRIPT = textwrap.dedent("""
    import time
    from stages.common.progress import progress
    for step in (bar := progress(range(20000), desc="outer")):
        if step % 20 == 0:
            bar.set_postfix(loss=str(step))
        if step % 2000 == 0:
            for _ in progress(range(100), desc="inner", leave=False):
                pass
        time.sleep(0.00005)
""")


def run_logged(tmp_path, every_s):
    log = tmp_path / "stage.log"
    env = {**os.environ, "STARFT_LOG_EVERY_S": str(every_s)}
    with open(log, "w") as f:
        subprocess.run([sys.executable, "-c", SCRIPT], stderr=f, env=env, check=True, timeout=120)
    return log.read_text()


def test_log_file_gets_only_start_and_final_lines_within_the_interval(tmp_path):
    text = run_logged(tmp_path, every_s=3600)
    assert "\r" not in text and text.endswith("\n")
    lines = text.splitlines()
    outer = [line for line in lines if line.startswith("outer")]
    inner = [line for line in lines if line.startswith("inner")]
    # 20,000 updates and 1,000 set_postfix calls: the first line and the last, nothing between
    assert len(outer) == 2 and "0/20000" in outer[0] and "20000/20000" in outer[1]
    assert "loss=19980" in outer[1]
    # leave=False bars still say where they ended: in a log nothing is erased
    assert len(inner) == 20 and sum("100/100" in line for line in inner) == 10
    assert len(lines) == 22


def test_log_file_lines_are_rate_limited(tmp_path):
    every = 0.2
    text = run_logged(tmp_path, every_s=every)
    assert "\r" not in text and "\x1b" not in text
    outer = [line for line in text.splitlines() if line.startswith("outer")]
    # the loop takes a few seconds: some intermediate lines, but one per interval at most
    # (+ start and end), not one per update or per postfix
    assert 3 <= len(outer) < 200
    assert outer[-1].startswith("outer: 100% 20000/20000")


def test_terminal_gets_the_usual_redrawn_bar():
    leader, follower = os.openpty()
    with open(follower, "w") as tty:
        for _ in progress(range(3), desc="tty", file=tty, mininterval=0):
            pass
    out = b""
    try:  # everything written, until the terminal reports its other end closed
        while chunk := os.read(leader, 4096):
            out += chunk
    except OSError:
        pass
    os.close(leader)
    out = out.decode()
    # frames redrawn in place: several "\r" on one line
    assert out.count("\r") >= 3 and "tty: 100%" in out and "\n" not in out.rstrip()
