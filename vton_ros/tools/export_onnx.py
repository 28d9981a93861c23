"""
export_onnx: export CatVTON's models to ONNX for the onnxruntime / TensorRT backend.

    export_onnx --params-file config/tryon.yaml --set catvton.attn_version=vitonhd --out onnx
    export_onnx --params-file config/tryon.yaml --params-file config/jetson_trt.yaml \
        --out onnx_jetson          # fp16 graphs for TensorRT on a Jetson; copy the folder

Exports at the settings' height, width, precision, attention version and (with
catvton.cache_interval > 1) DeepCache branch; the server with catvton.backend onnxruntime
and catvton.onnx_dir pointing at the folder refuses an export that does not fit its
settings. A full-size fp32 UNet takes minutes and ~10 GB of memory on a CPU.
"""

import argparse
import logging
import sys
import time


def settings_from(params_files: list[str], overrides: list[str]) -> dict:
    """tryon_server settings: defaults, then each params file in order, then --set."""
    from vton_ros.settings import files as param_files
    from vton_ros.settings import schema as params

    settings = params.defaults('tryon_server')
    for path in params_files:
        settings.update(param_files.load_yaml(path).get('tryon_server', {}))
    settings.update(params.validate('tryon_server', param_files.parse_overrides(overrides)))
    return settings


def build_parser() -> argparse.ArgumentParser:
    """Return the command-line parser."""
    from vton_ros.settings import files as param_files

    parser = argparse.ArgumentParser(prog='export_onnx', description=__doc__.split('\n')[1])
    parser.add_argument('--params-file', action='append', default=[],
                        help='ROS parameter file with the tryon_server settings; repeatable '
                             '(later files win, e.g. a profile overlay)')
    param_files.add_override_argument(parser)
    parser.add_argument('--out', required=True, help='output folder (catvton.onnx_dir)')
    parser.add_argument('--no-verify', action='store_true',
                        help='skip running each fp32 graph once in onnxruntime against torch')
    return parser


def main(args: list[str] | None = None) -> int:
    """Command-line entry point."""
    opts = build_parser().parse_args(args)
    logging.basicConfig(level=logging.WARNING, format='%(levelname)s %(name)s: %(message)s')
    start = time.perf_counter()

    def progress(line: str) -> None:
        print(f'[{time.perf_counter() - start:7.1f} s] {line}', flush=True)

    try:
        settings = settings_from(opts.params_file, opts.overrides)
        from vton_ros.settings.views import CatVTONCall, CatVTONLoad
        from vton_ros.pipeline.onnx_export import export_models
        export_models(CatVTONLoad.from_settings(settings), CatVTONCall.from_settings(settings),
                      opts.out, progress=progress, verify=not opts.no_verify)
    except (ValueError, FileNotFoundError) as err:
        print(f'export_onnx: {err}', file=sys.stderr)
        return 2
    return 0


if __name__ == '__main__':
    sys.exit(main())
