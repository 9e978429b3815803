"""What the baked image guarantees (paths, owners, modes, units, ports): one place for the bake, cloud-init and tests."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PathFact:
    """A path the image provides (or, for data dirs, recreates empty at boot) with its owner and mode."""

    path: str
    owner: str
    group: str
    mode: int
    kind: str = "dir"  # dir | file

    @property
    def mode_text(self) -> str:
        return f"{self.mode:04o}"


@dataclass(frozen=True)
class Port:
    port: int
    protocol: str  # tcp | udp


# Binaries come from HashiCorp's RPMs.
# The qemu build's NoCloud instance-id: a booted clone showing it still carries the build's cloud-init state.
BUILD_INSTANCE_ID = "nomadic-build"

NOMAD_BIN = "/usr/bin/nomad"
CONSUL_BIN = "/usr/bin/consul"
DOCKER_BIN = "/usr/bin/docker"

CONSUL_USER = "consul"
CONSUL_GROUP = "consul"

# Our units live in /etc/systemd/system and so win over the RPMs' units in /usr/lib/systemd/system.
UNIT_DIR = "/etc/systemd/system"
CONSUL_UNIT = f"{UNIT_DIR}/consul.service"
NOMAD_UNIT = f"{UNIT_DIR}/nomad.service"
# Enabled in the image (they start at boot).
ENABLED_UNITS = ("docker.service", "firewalld.service")
# Installed, not enabled, never started during the bake: each node's cloud-init (runcmd) enables and starts them
# once their configs exist and the firewalld zone that opens their ports is loaded. Enabled units would start at
# multi-user.target, before runcmd, behind a closed firewall.
AGENT_UNITS = ("consul.service", "nomad.service")
DISABLED_UNITS = AGENT_UNITS
NOT_STARTED_UNITS = AGENT_UNITS
# The OOM killer's order on a 1 GB node: job tasks first, then Consul, Nomad (which supervises the tasks) never.
NOMAD_OOM_SCORE_ADJUST = -1000
CONSUL_OOM_SCORE_ADJUST = -900

CONSUL_CONFIG_DIR = PathFact("/etc/consul.d", "root", CONSUL_GROUP, 0o750)
NOMAD_CONFIG_DIR = PathFact("/etc/nomad.d", "root", "root", 0o750)
# The files cloud-init writes; the RPMs' defaults at these paths are removed so nothing can start before it.
CONSUL_CONFIG_FILE = f"{CONSUL_CONFIG_DIR.path}/consul.hcl"
NOMAD_CONFIG_FILE = f"{NOMAD_CONFIG_DIR.path}/nomad.hcl"

# Data dirs are never baked (a baked node-id makes clones collide); tmpfiles.d recreates them empty at boot.
CONSUL_DATA_DIR = PathFact("/opt/consul", CONSUL_USER, CONSUL_GROUP, 0o750)
NOMAD_DATA_DIR = PathFact("/opt/nomad", "root", "root", 0o700)
DATA_DIRS = (CONSUL_DATA_DIR, NOMAD_DATA_DIR)
TMPFILES_CONF = "/etc/tmpfiles.d/nomadic.conf"

CONFIG_DIRS = (CONSUL_CONFIG_DIR, NOMAD_CONFIG_DIR)
# The RPMs ship these; the bake removes them so neither agent can start before cloud-init writes its config.
PACKAGE_DEFAULT_CONFIGS = (CONSUL_CONFIG_FILE, NOMAD_CONFIG_FILE)

FIREWALLD_SERVICE_DIR = "/etc/firewalld/services"
# Service definitions only: cloud-init adds them to a zone whose source is the cluster CIDR. Only what listens
# on the cluster address: Consul's client_addr is loopback, so its HTTP API (8500) and DNS (8600) are not here
# (the UI is reached through an SSH tunnel, Nomad talks to the local agent).
FIREWALLD_SERVICES: dict[str, tuple[Port, ...]] = {
    "consul": (
        Port(8300, "tcp"),  # server RPC
        Port(8301, "tcp"),  # LAN serf
        Port(8301, "udp"),
    ),
    "nomad": (
        Port(4646, "tcp"),  # HTTP API
        Port(4647, "tcp"),  # RPC
        Port(4648, "tcp"),  # serf
        Port(4648, "udp"),
    ),
}

SYSCTL_CONF = "/etc/sysctl.d/90-nomadic.conf"
MODULES_LOAD_CONF = "/etc/modules-load.d/nomadic.conf"
# br_netfilter must be loaded at boot or the bridge-nf sysctls do not exist when systemd-sysctl applies them.
KERNEL_MODULES = ("overlay", "br_netfilter")
# Nomad's dynamic host ports are 20000-32000: ephemeral ports must stay clear of them.
NOMAD_DYNAMIC_PORTS = (20000, 32000)
EPHEMERAL_PORT_RANGE = (32768, 60999)
SYSCTLS: dict[str, str] = {
    "net.bridge.bridge-nf-call-iptables": "1",
    "net.bridge.bridge-nf-call-ip6tables": "1",
    "net.ipv4.ip_forward": "1",
    "net.ipv4.ip_local_port_range": f"{EPHEMERAL_PORT_RANGE[0]} {EPHEMERAL_PORT_RANGE[1]}",
    "vm.swappiness": "10",
}

SWAP_FILE = "/swapfile"

# AlmaLinux's containernetworking-plugins puts the CNI plugins here (not /opt/cni/bin, Nomad's default); the
# Nomad client's cni_path points at it. These are the ones bridge networking and Consul service mesh use.
CNI_DIR = "/usr/libexec/cni"
CNI_PLUGINS = ("bridge", "firewall", "host-local", "loopback", "portmap")

# What OCI needs to boot an image we bake locally and import (paravirtualized launch mode), and what AlmaLinux's
# GenericCloud and OCI images both have: the serial console OCI's console connection reads, eth0 naming, a
# generic (not host-only) initramfs so the virtio drivers are there whatever host rebuilt it, and cloud-init
# allowed to detect its Oracle datasource (no datasource_list without it).
OCI_BOOT_KERNEL_ARGS = ("console=ttyS0", "net.ifnames=0")
OCI_BOOT_PACKAGES = ("dracut-config-generic", "cloud-init")
OCI_DATASOURCE = "Oracle"

# dnf versionlock's list: the pinned packages stay at their versions through a `dnf upgrade` on a node.
VERSIONLOCK_LIST = "/etc/dnf/plugins/versionlock.list"

# Identity that must not be in the image: each clone makes its own at first boot.
MACHINE_ID = "/etc/machine-id"  # present and empty: systemd generates an ID on first boot
SSH_HOST_KEY_GLOB = "/etc/ssh/ssh_host_*"
ABSENT_PATHS = (
    CONSUL_DATA_DIR.path,
    NOMAD_DATA_DIR.path,
    CONSUL_CONFIG_FILE,
    NOMAD_CONFIG_FILE,
    "/var/lib/cloud/instance",
    "/var/lib/cloud/instances",
    "/var/lib/cloud/seed",
    "/var/lib/systemd/random-seed",
    "/var/cache/dnf",
)
