"""Invoke tasks: thin wrappers that load the settings once and call into the nomadic package."""

from __future__ import annotations

import functools
import os
import sys
from pathlib import Path
from typing import Any, Callable

from invoke import Collection, Exit, Task
from invoke import task as _invoke_task
from invoke.exceptions import ParseError
from invoke.parser import Argument

from nomadic import config
from nomadic.errors import ConfigError, NomadicError

ROOT = Path(__file__).resolve().parent

# Invoke reads invoke.yaml right after importing this file and answers a broken one with a traceback:
# check it first, and stop with one line.
try:
    config.check_project_file(ROOT)
except NomadicError as _exc:
    print(f"error: {_exc}", file=sys.stderr)
    raise SystemExit(1) from None

# Flags that take whole numbers: shown as INT in --help, and a word given to one is a one-line error.
INTEGER_FLAGS = {"count", "servers", "port"}


class _IntArgument(Argument):
    def set_value(self, value: Any, cast: bool = True) -> None:
        if cast and value is not None:
            try:
                value = int(value)
            except ValueError:
                raise ParseError(f"error: --{self.name} takes a whole number, not {value!r}") from None
        super().set_value(value, cast=False)


class _Task(Task):
    """Long flags only (the same name means the same flag in every task), integer flags typed as integers."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("auto_shortflags", False)
        super().__init__(*args, **kwargs)

    def get_arguments(self, ignore_unknown_help: bool | None = None) -> list[Argument]:
        arguments = super().get_arguments(ignore_unknown_help)
        for arg in arguments:
            if arg.attr_name in INTEGER_FLAGS or arg.name in INTEGER_FLAGS:
                arg.__class__ = _IntArgument
                arg.kind = int
        return arguments


def task(*args: Any, **kwargs: Any) -> Any:
    return _invoke_task(*args, klass=_Task, **kwargs)


def _settings(c: Any, **overrides: Any) -> config.Settings:
    return config.load(c.config, ROOT, overrides, env=os.environ)


def _user_errors(fn: Callable[..., None]) -> Callable[..., None]:
    """Map the package's exceptions to one line on stderr and a non-zero exit, once, here."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> None:
        try:
            fn(*args, **kwargs)
        except NomadicError as exc:
            raise Exit(f"error: {exc}", code=exc.exit_code) from None
        except KeyboardInterrupt:
            raise Exit("interrupted", code=130) from None
        except OSError as exc:  # a file or folder of ours that the user made unwritable or replaced
            where = f"{exc.filename}: " if exc.filename else ""
            raise Exit(f"error: {where}{exc.strerror or exc} (check that folder's type and permissions)", code=1) from None

    return wrapper


@task(
    help={
        "target": "oci (bake in your tenancy) or qemu (bake a local qcow2); default build.target",
        "image": "image definition under images/ (default build.image: almalinux9)",
        "dry_run": "render and validate only; do not run packer build",
    }
)
@_user_errors
def build_image(c, target=None, image=None, dry_run=False):
    """Bake the AlmaLinux 9 + Docker + Nomad + Consul image with Packer."""
    from nomadic import commands

    commands.build_image(_settings(c, **{"build.target": target, "build.image": image}), dry_run=dry_run)


@task(
    help={
        "count": "number of nodes (default cluster.count)",
        "servers": "number of servers (default: all up to 5, then 3)",
        "cluster": "cluster name (default cluster.name)",
        "image": "image definition for the Packer templates (default build.image)",
    }
)
@_user_errors
def render(c, count=None, servers=None, cluster=None, image=None):
    """Write every rendered artifact (Packer templates, per-node configs) into build/ without running anything."""
    from nomadic import commands

    commands.render(
        _settings(
            c,
            **{"cluster.count": count, "cluster.servers": servers, "cluster.name": cluster, "build.image": image},
        )
    )


@task(
    help={
        "count": "number of nodes (default cluster.count)",
        "servers": "number of servers",
        "cluster": "cluster name (default cluster.name)",
    }
)
@_user_errors
def validate(c, count=None, servers=None, cluster=None):
    """Render, then run every offline validator (packer validate, cloud-init schema, HCL, cluster checks)."""
    from nomadic import commands

    commands.validate(_settings(c, **{"cluster.count": count, "cluster.servers": servers, "cluster.name": cluster}))


@task(
    help={
        "count": "number of nodes (default cluster.count)",
        "servers": "number of servers",
        "cluster": "cluster name (default cluster.name)",
        "provider": "oci or local (default cluster.provider)",
        "image_id": "OCI image OCID to launch (default: the one build-image recorded)",
        "image": "local qcow2 path to boot (provider local; default: the one build-image recorded)",
        "wait_cluster": "after boot, wait over SSH until Consul and Nomad have a leader and every member",
        "allow_paid": "allow a launch that leaves the Always Free tier",
    }
)
@_user_errors
def launch(
    c,
    count=None,
    servers=None,
    cluster=None,
    provider=None,
    image_id=None,
    image=None,
    wait_cluster=False,
    allow_paid=False,
):
    """Launch the cluster's nodes (only those missing) and write inventory.ini and ssh_config."""
    from nomadic import commands

    settings = _settings(
        c,
        **{
            "cluster.count": count,
            "cluster.servers": servers,
            "cluster.name": cluster,
            "cluster.provider": provider,
            "oci.allow_paid": True if allow_paid else None,
        },
    )
    if image_id and settings.cluster.provider is config.Provider.LOCAL:
        raise ConfigError("--image-id takes an OCI image OCID; the local provider boots a qcow2", hint="pass --image PATH")
    if image and settings.cluster.provider is config.Provider.OCI:
        raise ConfigError("--image takes a local qcow2; the oci provider launches an image OCID", hint="pass --image-id OCID")
    commands.launch(settings, image=image_id or image, wait_cluster=wait_cluster)


@task(
    help={
        "source": "almalinux (download AlmaLinux's OCI image) or local (the qcow2 build-image --target qemu made)",
        "path": "with --source local: this qcow2 instead of the recorded one",
        "image": "image definition (default build.image)",
        "delete_object": "delete the uploaded object once the image exists (default oci.delete_uploaded_object)",
        "allow_paid": "allow an upload beyond the Always Free 20 GB of Object Storage",
    }
)
@_user_errors
def import_image(c, source, path=None, image=None, delete_object=False, allow_paid=False):
    """Import a qcow2 into OCI as a custom image and record it for build-image (base) or launch (node image)."""
    from nomadic import imageimport

    settings = _settings(c, **{"build.image": image, "oci.allow_paid": True if allow_paid else None})
    imageimport.import_image(
        settings, imageimport.parse_source(source), Path(path).expanduser() if path else None, True if delete_object else None
    )


@task(help={"cluster": "cluster name (default cluster.name)", "provider": "oci or local"})
@_user_errors
def status(c, cluster=None, provider=None):
    """Show the cluster's nodes, their state, role and addresses, and cluster health when reachable."""
    from nomadic import commands

    commands.status(_settings(c, **{"cluster.name": cluster, "cluster.provider": provider}))


@task(
    help={
        "cluster": "cluster name (default cluster.name)",
        "provider": "oci or local",
        "yes": "do not ask for confirmation",
    }
)
@_user_errors
def destroy(c, cluster=None, provider=None, yes=False):
    """Terminate exactly the nodes tagged with this cluster (asks first)."""
    from nomadic import commands

    commands.destroy(_settings(c, **{"cluster.name": cluster, "cluster.provider": provider}), yes=yes)


@task(
    help={
        "host": "address of a booted image or node to check over SSH",
        "port": "SSH port (default 22)",
        "user": "SSH user (default oci.ssh_user)",
        "key": "SSH private key (default cluster.ssh_private_key)",
    }
)
@_user_errors
def verify_image(c, host, port=None, user=None, key=None):
    """Run the image verification suite (tests/image) against a booted host over SSH."""
    from nomadic import commands

    commands.verify_image(_settings(c), host=host, port=22 if port is None else port, user=user, key=key)


_JOB_FLAGS = {
    "job": "echo, knotdns, web or lb (see jobs/README.md)",
    "all": "every job (deploy: web before lb)",
    "cluster": "cluster name (default cluster.name)",
    "provider": "oci or local (default cluster.provider)",
}


@task(
    positional=["job"],
    help={
        **_JOB_FLAGS,
        "dry_run": "render into build/<cluster>/jobs/ and validate only; submit nothing",
        "yes": "OCI: open the job's ports to jobs.public_cidr without asking, even 0.0.0.0/0",
    },
)
@_user_errors
def deploy(c, job=None, all=False, dry_run=False, yes=False, cluster=None, provider=None):
    """Render a job, validate it, submit it to the cluster's Nomad and wait until its deployment is healthy."""
    from nomadic import commands

    settings = _settings(c, **{"cluster.name": cluster, "cluster.provider": provider})
    commands.deploy(settings, job=job, every=all, dry_run=dry_run, yes=yes)


@task(help={"cluster": "cluster name (default cluster.name)", "provider": "oci or local"})
@_user_errors
def jobs(c, cluster=None, provider=None):
    """List the cluster's jobs and the nodes their allocations run on."""
    from nomadic import commands

    commands.jobs(_settings(c, **{"cluster.name": cluster, "cluster.provider": provider}))


@task(positional=["job"], help=_JOB_FLAGS)
@_user_errors
def stop(c, job=None, all=False, cluster=None, provider=None):
    """Stop a job (or --all) on the cluster; on OCI also close the ports it published."""
    from nomadic import commands

    commands.stop(_settings(c, **{"cluster.name": cluster, "cluster.provider": provider}), job=job, every=all)


ns = Collection(build_image, import_image, render, validate, launch, status, destroy, verify_image, deploy, jobs, stop)
ns.configure(config.defaults())
