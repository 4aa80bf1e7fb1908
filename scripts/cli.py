"""The ``vantage`` command: one front for training, evaluation, benchmarks, data, export and deployment."""

from __future__ import annotations

import click

from scripts.options import ErrorReportingGroup


@click.group(cls=ErrorReportingGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="vantage")
# Read by ErrorReportingGroup.main from the command line itself, so it also covers errors in parsing options.
@click.option("--debug", is_flag=True, expose_value=False,
              help="Show the full traceback of an error (also VANTAGE_DEBUG=1); without it an error is one line.")
def main() -> None:
    """Vantage: simulation-in-the-loop active perception workbench.

    Errors are one line on stderr; exit codes: 0 done, 1 error, 2 usage error, 130 interrupted (Ctrl-C).
    """


@main.group(cls=ErrorReportingGroup)
def bench() -> None:
    """Speed and learning benchmarks; each prints ratios and can write JSON."""


def _register() -> None:
    # Subcommands live in their own modules; imported here so `vantage --help` lists them all.
    # --- registration block: one line per command module ---
    from scripts.train_eval_cli import eval_cmd, train_cmd; main.add_command(train_cmd); main.add_command(eval_cmd)
    from scripts.bench_tracking import bench_env, bench_rewards; bench.add_command(bench_env); bench.add_command(bench_rewards)
    from scripts.demo import demo; main.add_command(demo)
    from scripts.perception_cli import perception; main.add_command(perception)
    from scripts.data_cli import data; main.add_command(data)
    from scripts.bench_perception import bench_perception; bench.add_command(bench_perception)
    from scripts.bench_rainbow import rainbow as _rainbow; bench.add_command(_rainbow)
    from scripts.bench_face_recognition import active_vs_static
    from scripts.vqa_cli import ActiveVsStaticDispatch, vqa_active_vs_static
    bench.add_command(ActiveVsStaticDispatch({"face-recognition": active_vs_static, "vqa": vqa_active_vs_static}))
    from scripts.deploy import bench_deploy, deploy, export_cmd; main.add_command(export_cmd); main.add_command(deploy); bench.add_command(bench_deploy)
    from scripts.sweep import bench_sweep_overhead, sweep_cmd; main.add_command(sweep_cmd); bench.add_command(bench_sweep_overhead)
    from scripts.vqa_cli import vqa; main.add_command(vqa)
    from scripts.fusion_cli import bench_fusion, fusion; main.add_command(fusion); bench.add_command(bench_fusion)


_register()

if __name__ == "__main__":
    main()
