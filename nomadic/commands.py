"""What each task does, in terms of the package's modules; tasks.py calls these with loaded Settings."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .config import Settings

if TYPE_CHECKING:
    from .plan import Plan


def build_image(settings: Settings, dry_run: bool) -> None:
    from . import imagebuild

    imagebuild.build(settings, dry_run=dry_run)


def verify_image(settings: Settings, host: str, port: int, user: str | None, key: str | None) -> None:
    from . import imagebuild

    imagebuild.verify(settings, host=host, port=port, user=user, key=key)


def plan_table(plan: "Plan") -> str:
    """The plan as an aligned text table: node, role, address, hostname."""
    from .outputs import format_table

    rows = [(n.name, n.role.value, n.address, n.hostname) for n in plan.nodes]
    return format_table(("NODE", "ROLE", "ADDRESS", "HOSTNAME"), rows)


def render(settings: Settings) -> None:
    """Plan the cluster, write every node's user-data and HCL, render the image templates, show the plan."""
    import sys

    from . import imagebuild, nodeconfig
    from .plan import make_plan

    plan = make_plan(settings.cluster)
    imagebuild.render_templates(settings)
    nodes_dir = nodeconfig.write_nodes(settings, plan)
    for warning in plan.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    print(plan_table(plan))
    nodes, servers = len(plan.nodes), plan.bootstrap_expect
    print(
        f"{nodes} node{'s' if nodes != 1 else ''}, {servers} server{'s' if servers != 1 else ''} "
        f"(bootstrap_expect {servers}), datacenter {plan.datacenter}, network {plan.cidr}"
    )
    print(f"node files: {nodes_dir}")


def validate(settings: Settings) -> None:
    """Render, then check what was written: both cloud-init schemas, HCL, the agents' own validators, the
    cluster as a whole, the image."""
    from . import agentcheck, clustercheck, imagebuild, nodecheck, nodeconfig
    from .errors import RenderError

    render(settings)
    nodes_dir = nodeconfig.nodes_dir(settings)
    checks = nodecheck.validate_written(nodes_dir)
    agents = {"consul": settings.build.consul, "nomad": settings.build.nomad}
    checks += agentcheck.validate_nodes(nodes_dir, agents)
    for check in checks:
        print(check.line())
    imagebuild.validate_templates(settings)
    bad = clustercheck.failed(checks)
    if bad:
        raise RenderError(
            f"{len(bad)} of {len(checks)} node checks failed (first: {bad[0].name})",
            hint="see the FAIL lines above",
        )


def launch(settings: Settings, image: str | None, wait_cluster: bool) -> None:
    from . import lifecycle

    lifecycle.launch(settings, image=image, wait_cluster=wait_cluster)


def status(settings: Settings) -> None:
    from . import lifecycle

    lifecycle.status(settings)


def destroy(settings: Settings, yes: bool) -> None:
    from . import lifecycle

    lifecycle.destroy(settings, yes=yes)
