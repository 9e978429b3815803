"""The one seam to external programs: every subprocess runs through here, via the sh library."""

from __future__ import annotations

import shlex
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Mapping, Sequence

import sh

from .errors import CommandFailed, Interrupted, ToolMissing

# How to get each external tool; shown when it is missing.
INSTALL_HINTS: dict[str, str] = {
    "packer": "install Packer: 'apt-get install packer' (Debian) or https://developer.hashicorp.com/packer/install",
    "qemu-system-x86_64": "install QEMU: 'apt-get install qemu-system-x86 qemu-utils' or 'dnf install qemu-kvm'",
    "qemu-img": "install qemu-utils: 'apt-get install qemu-utils'",
    "ssh": "install an OpenSSH client: 'apt-get install openssh-client'",
    "ssh-keygen": "install an OpenSSH client: 'apt-get install openssh-client'",
}


@dataclass(frozen=True)
class Result:
    argv: tuple[str, ...]
    exit_code: int
    stdout: str
    stderr: str


def which(program: str) -> str:
    """Absolute path of `program`, or ToolMissing with how to install it."""
    found = shutil.which(program)
    if not found:
        hint = INSTALL_HINTS.get(Path(program).name, f"install {program} and make sure it is on PATH")
        raise ToolMissing(f"{program} not found on PATH", hint=hint)
    return found


def show(argv: Sequence[str]) -> str:
    """The command as a user could paste it into a shell."""
    return shlex.join(argv)


def run(
    argv: Sequence[str],
    *,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    stream: IO[str] | None = None,
    log: Path | None = None,
    check: bool = True,
    step: str | None = None,
    stdin: str | None = None,
    timeout: float | None = None,
) -> Result:
    """Run argv; with `stream`, echo each output line live (and to `log`) while it runs.

    A non-zero exit raises CommandFailed naming the step, the command, the exit code and the log.
    Ctrl-C stops the child first (sh sends it SIGINT via the process group) and raises Interrupted.
    """
    program = which(argv[0])
    label = step or Path(argv[0]).name
    log_fh = log.open("a", encoding="utf-8") if log else None
    captured: list[str] = []

    def on_line(line: str) -> None:
        captured.append(line)
        if stream is not None:
            stream.write(line)
            stream.flush()
        if log_fh is not None:
            log_fh.write(line)
            log_fh.flush()

    kwargs: dict = {
        "_cwd": str(cwd) if cwd else None,
        "_ok_code": list(range(256)),
        "_timeout": timeout,
        "_return_cmd": True,
        # Its own process group: on Ctrl-C, _stop signals the child's group only (never ourselves, which would
        # turn our clean Interrupted into a second KeyboardInterrupt) and the child can clean up once.
        "_new_group": True,
    }
    if env is not None:
        kwargs["_env"] = dict(env)
    if stdin is not None:
        kwargs["_in"] = stdin
    if stream is not None or log_fh is not None:
        kwargs.update(_out=on_line, _err=on_line, _bg=True, _bg_exc=False)
    try:
        proc = sh.Command(program)(*argv[1:], **kwargs)
        if stream is not None or log_fh is not None:
            proc.wait()
        out = "".join(captured) if captured else _text(proc.stdout)
        err = "" if captured else _text(proc.stderr)
        code = proc.exit_code
    except KeyboardInterrupt:
        _stop(locals().get("proc"))
        raise Interrupted(
            f"{label} interrupted by Ctrl-C",
            hint="what it had started may still exist; see the step's log and rerun the task to converge",
        ) from None
    except sh.TimeoutException:
        raise CommandFailed(f"{label} timed out after {timeout:.0f}s: {show(argv)}") from None
    finally:
        if log_fh is not None:
            log_fh.close()
    if check and code != 0:
        where = f"; log: {log}" if log else ""
        tail = (err or out).strip().splitlines()[-1:] if not stream else []
        detail = f": {tail[0]}" if tail else ""
        raise CommandFailed(f"{label} failed with exit code {code}{detail}", hint=f"command: {show(argv)}{where}")
    return Result(tuple(argv), code, out, err)


def run_parallel(
    argvs: Sequence[Sequence[str]], *, jobs: int, timeout: float, env: Mapping[str, str] | None = None
) -> list[Result]:
    """Run many short checks (validators) at most `jobs` at a time; results in argv order, never raising on exit.

    Plain subprocess rather than sh: for a program that lives 0.1 s, sh's per-call threads and polling cost as
    much again. Ctrl-C reaches the children through the terminal's process group; then Interrupted.
    """
    import subprocess
    from concurrent.futures import ThreadPoolExecutor

    programs = {argv[0]: which(argv[0]) for argv in argvs}

    def one(argv: Sequence[str]) -> Result:
        try:
            done = subprocess.run(
                [programs[argv[0]], *argv[1:]], capture_output=True, text=True, errors="replace", timeout=timeout,
                env=dict(env) if env is not None else None,
            )
        except subprocess.TimeoutExpired:
            raise CommandFailed(f"{Path(argv[0]).name} timed out after {timeout:.0f}s: {show(argv)}") from None
        return Result(tuple(argv), done.returncode, done.stdout, done.stderr)

    try:
        with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
            return list(pool.map(one, argvs))
    except KeyboardInterrupt:
        raise Interrupted("validators interrupted by Ctrl-C", hint="nothing was changed; run it again") from None


def _text(data: bytes | str | None) -> str:
    if data is None:
        return ""
    return data.decode("utf-8", "replace") if isinstance(data, bytes) else data


def _stop(proc: object) -> None:
    if proc is None:
        return
    try:
        proc.signal_group(2)  # type: ignore[attr-defined]
        proc.wait()  # type: ignore[attr-defined]
    except Exception:  # the child may already be gone; nothing more to stop
        pass




# Background processes (local VMs, the cluster network hub). They daemonize themselves (QEMU's -daemonize, the
# hub's --daemonize) after they have bound their ports and opened their files, so a start-up error still comes
# back through run() with an exit code and a message, and the process outlives the task without a zombie.


def spawn(argv: Sequence[str], pid_file: Path, *, step: str | None = None, log: Path | None = None) -> int:
    """Start a program that daemonizes itself and writes `pid_file`; return its pid once it runs."""
    pid_file.unlink(missing_ok=True)
    run(argv, step=step, log=log)
    try:
        pid = int(pid_file.read_text(encoding="ascii").strip())
    except (OSError, ValueError):
        raise CommandFailed(
            f"{step or Path(argv[0]).name} started but wrote no pid to {pid_file}", hint=f"command: {show(argv)}"
        ) from None
    return pid


def cmdline(pid: int) -> list[str]:
    """The argv of a running process, or [] when there is none (or it is a zombie)."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [part.decode("utf-8", "replace") for part in raw.split(b"\0") if part]


def is_ours(pid: int, program: str, marker: str) -> bool:
    """Whether `pid` still runs `program` with `marker` among its arguments (guards against a reused pid)."""
    argv = cmdline(pid)
    return bool(argv) and any(Path(a).name.startswith(program) for a in argv[:2]) and any(
        marker in a for a in argv[1:]
    )


def terminate(pid: int, program: str, marker: str, timeout: float = 30.0) -> bool:
    """Stop `pid` if it is ours (SIGTERM, then SIGKILL after `timeout`) and wait until it is gone.

    Returns False when the pid was not ours (already gone, or reused by another program): nothing was signalled.
    """
    import os
    import select
    import signal

    if not is_ours(pid, program, marker):
        return False
    try:
        pidfd = os.pidfd_open(pid)
    except ProcessLookupError:
        return True
    try:
        # Checked again after pidfd_open: from here on the fd names exactly this process, whatever pids do.
        if not is_ours(pid, program, marker):
            return False
        for sig, wait_s in ((signal.SIGTERM, timeout), (signal.SIGKILL, 10.0)):
            try:
                signal.pidfd_send_signal(pidfd, sig)
            except ProcessLookupError:
                return True
            poller = select.poll()
            poller.register(pidfd, select.POLLIN)
            if poller.poll(int(wait_s * 1000)):
                return True
        raise CommandFailed(f"process {pid} ({program}) did not exit after SIGKILL")
    finally:
        os.close(pidfd)
