"""Recorders standing in for dnf, rpm, systemctl & co. when tests run the provisioning scripts in a scratch root.

Each call is appended to $FAKE_LOG (one JSON argv per line). Where a script's next step depends on the answer
(rpm -q after dnf install, systemctl is-enabled after enable, getent after useradd), the recorder keeps just
enough state in $FAKE_STATE, and dnf mimics what the real RPMs put into the root (binaries, default configs,
the consul user, /opt/consul), so the scripts meet what they would meet on AlmaLinux.
Usage: fakebin.py <program name> <args...> (tests generate one wrapper per name).
"""

from __future__ import annotations

import json
import os
import re
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

ROOT = Path(os.environ["NOMADIC_ROOT"])
STATE = Path(os.environ["FAKE_STATE"])
LOG = Path(os.environ["FAKE_LOG"])

# What installing each package puts into the root, as the real RPMs do.
RPM_FILES = {
    "nomad": {"usr/bin/nomad": "#!/bin/sh\n", "etc/nomad.d/nomad.hcl": 'data_dir = "/opt/nomad/data"\n',
              "etc/nomad.d/nomad.env": "", "opt/nomad/data/.keep": ""},
    "consul": {"usr/bin/consul": "#!/bin/sh\n", "etc/consul.d/consul.hcl": 'data_dir = "/opt/consul"\n',
               "etc/consul.d/consul.env": "", "opt/consul/.keep": ""},
    "docker-ce": {"usr/bin/docker": "#!/bin/sh\n"},
    "containernetworking-plugins": {f"usr/libexec/cni/{p}": "#!/bin/sh\n" for p in ("bridge", "loopback", "portmap", "firewall", "host-local")},
}
VERSIONLOCK = "etc/dnf/plugins/versionlock.list"
NAME_VERSION = re.compile(r"^(?P<name>.+?)-(?P<version>[0-9][0-9.]*)$")


def load() -> dict:
    if STATE.exists():
        return json.loads(STATE.read_text())
    # What AlmaLinux's GenericCloud and OCI images come with (of what the scripts ask rpm about).
    preinstalled = {"cloud-init": "24.4", "dracut-config-generic": "057"}
    return {"installed": preinstalled, "enabled": [], "owners": {}, "active": []}


def save(state: dict) -> None:
    STATE.write_text(json.dumps(state, indent=1, sort_keys=True))


def install(state: dict, spec: str) -> None:
    m = NAME_VERSION.match(spec)
    name, version = (m["name"], m["version"]) if m else (spec, "1.0")
    state["installed"][name] = version
    for rel, text in RPM_FILES.get(name, {}).items():
        path = ROOT / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        if rel.startswith(("usr/bin/", "usr/libexec/")):
            path.chmod(0o755)
    if name == "consul":
        add_user("consul")


def add_user(name: str) -> None:
    passwd = ROOT / "etc/passwd"
    lines = passwd.read_text().splitlines() if passwd.exists() else []
    if not any(line.split(":")[0] == name for line in lines):
        lines.append(f"{name}:x:990:990::/home/{name}:/sbin/nologin")
        passwd.write_text("\n".join(lines) + "\n")


def dnf(state: dict, args: list[str]) -> int:
    words = [a for a in args if not a.startswith("-")]
    if not words:
        return 1
    cmd = words[0]
    if cmd == "install":
        for spec in words[1:]:
            install(state, spec)
    elif cmd == "config-manager" and "--add-repo" in args:
        url = args[args.index("--add-repo") + 1]
        repo = ROOT / "etc/yum.repos.d" / url.rsplit("/", 1)[-1]
        repo.parent.mkdir(parents=True, exist_ok=True)
        repo.write_text(f"[{repo.stem}]\nbaseurl={url}\nenabled=1\ngpgcheck=1\n")
    elif cmd == "versionlock" and words[1:2] == ["add"]:  # as the plugin writes it: name-epoch:version-release.*
        lock = ROOT / VERSIONLOCK
        lock.parent.mkdir(parents=True, exist_ok=True)
        with lock.open("a") as fh:
            for spec in words[2:]:
                m = NAME_VERSION.match(spec)
                if not m or state["installed"].get(m["name"]) != m["version"]:
                    print(f"Error: no package matched: {spec}", file=sys.stderr)
                    return 1
                fh.write(f"{m['name']}-0:{m['version']}-1.el9.*\n")
    elif cmd == "versionlock" and words[1:2] == ["delete"]:
        lock = ROOT / VERSIONLOCK
        names = set(words[2:])
        if lock.exists():
            keep = [ln for ln in lock.read_text().splitlines() if ln.split(":")[0].rsplit("-", 1)[0] not in names]
            lock.write_text("".join(f"{ln}\n" for ln in keep))
    elif cmd == "clean":
        pass
    elif cmd == "check-update":
        return 0  # nothing pending
    return 0


def rpm(state: dict, args: list[str]) -> int:
    names = [a for a in args if not a.startswith("-") and a != "%{VERSION}"]
    status = 0
    for name in names:
        if name in state["installed"]:
            print(state["installed"][name] if "--qf" in args else f"{name}-{state['installed'][name]}", end="")
        else:
            print(f"package {name} is not installed")
            status = 1
    return status


def systemctl(state: dict, args: list[str]) -> int:
    words = [a for a in args if not a.startswith("-")]
    cmd, units = words[0], words[1:]
    if cmd == "enable":
        state["enabled"] = sorted(set(state["enabled"]) | set(units))
    elif cmd == "disable":
        state["enabled"] = sorted(set(state["enabled"]) - set(units))
    elif cmd == "is-enabled":
        return 0 if all(u in state["enabled"] for u in units) else 1
    elif cmd == "is-active":
        active = [u in state["active"] for u in units]
        if "--quiet" not in args:
            print("\n".join("active" if a else "inactive" for a in active))
        return 0 if all(active) else 3
    return 0  # daemon-reload


def getent(args: list[str]) -> int:
    passwd = ROOT / "etc/passwd"
    for line in passwd.read_text().splitlines() if passwd.exists() else []:
        if line.split(":")[0] == args[1]:
            print(line)
            return 0
    return 2


def firewall_info(args: list[str]) -> int:
    name = next(a.split("=", 1)[1] for a in args if a.startswith("--info-service="))
    path = ROOT / "etc/firewalld/services" / f"{name}.xml"
    if not path.exists():
        print(f"Error: INVALID_SERVICE: {name}", file=sys.stderr)
        return 101
    ports = [f"{p.get('port')}/{p.get('protocol')}" for p in ET.parse(path).getroot().iter("port")]
    print(f"{name}\n  ports: {' '.join(ports)}\n  protocols: ")
    return 0


def chown(state: dict, args: list[str]) -> int:
    owner, *paths = [a for a in args if not a.startswith("-")]
    for p in paths:
        if not os.path.exists(p):
            print(f"chown: cannot access '{p}'", file=sys.stderr)
            return 1
        state["owners"][os.path.realpath(p)] = owner
    return 0


def stat(state: dict, args: list[str]) -> int:
    """Real stat, with %U/%G answered from the recorded chowns (the scratch root's users are not the host's)."""
    fmt = args[args.index("-c") + 1]
    path = args[-1]
    st = os.stat(path)
    owner, _, group = state["owners"].get(os.path.realpath(path), "root:root").partition(":")
    out = fmt.replace("%U", owner).replace("%G", group or owner).replace("%a", f"{st.st_mode & 0o7777:o}")
    print(out.replace("%s", str(st.st_size)))
    return 0


def cloud_init(args: list[str]) -> int:
    if args and args[0] == "clean":
        import shutil

        cloud = ROOT / "var/lib/cloud"
        for child in cloud.iterdir() if cloud.exists() else []:
            if child.name != "seed" or "--seed" in args:
                shutil.rmtree(child) if child.is_dir() else child.unlink()
        if "--logs" in args:
            for log in (ROOT / "var/log").glob("cloud-init*.log"):
                log.unlink()
    return 0


def main() -> int:
    prog, args = Path(sys.argv[1]).name, sys.argv[2:]
    with LOG.open("a") as fh:
        fh.write(json.dumps([prog, *args]) + "\n")
    state = load()
    try:
        if prog == "dnf":
            return dnf(state, args)
        if prog == "rpm":
            return rpm(state, args)
        if prog == "systemctl":
            return systemctl(state, args)
        if prog == "getent":
            return getent(args)
        if prog == "useradd":
            add_user(args[-1])
            return 0
        if prog in ("firewall-offline-cmd", "firewall-cmd"):
            return firewall_info(args)
        if prog == "chown":
            return chown(state, args)
        if prog == "stat":
            return stat(state, args)
        if prog == "cloud-init":
            return cloud_init(args)
        if prog == "getenforce":
            print(state.get("selinux", "Enforcing"))
            return 0
        if prog == "pgrep":
            return 1  # no package manager running
        return 0  # modprobe, sysctl, restorecon, setenforce: recorded only
    finally:
        save(state)


if __name__ == "__main__":
    sys.exit(main())
