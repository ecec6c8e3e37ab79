"""`lpbf-edge calib register|apply|measure`: compute, apply and check the webcam-to-plate registration.

The commands drive the calib package through its public functions; calib itself knows nothing of the box's
config file. `calib baseline` is added to this group by edge.analyze.cli.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from edge.config_cli import load_config_or_exit


def _points(text: str | None, what: str):
    """Parse 'x,y;x,y;...' into an Nx2 array (or None)."""
    if text is None:
        return None
    import numpy as np

    try:
        pts = np.array([[float(v) for v in p.split(",")] for p in text.split(";") if p.strip()], dtype=float)
    except ValueError as exc:
        raise typer.BadParameter(f"{what}: expected 'x,y;x,y;...' ({exc})") from exc
    if pts.ndim != 2 or pts.shape[1] != 2:
        raise typer.BadParameter(f"{what}: expected pairs 'x,y' separated by ';'")
    return pts


def _read(path: Path):
    """Read an image as 8-bit mono or exit with a clear message."""
    import cv2

    img = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    if img is None:
        typer.echo(f"error: {path}: cannot read image (missing, truncated or not an image)", err=True)
        raise typer.Exit(1)
    return img


def _build_fiducials(build_json: Path):
    """HR fiducial centres (fiducials_hr) of a sim build.json, or exit 1 naming the file."""
    import numpy as np

    try:
        return np.array(json.loads(build_json.read_text())["fiducials_hr"], dtype=float).reshape(-1, 2)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        typer.echo(f"error: {build_json}: no usable fiducials_hr ({exc})", err=True)
        raise typer.Exit(1) from exc


def register_cmd(
    webcam_img: Annotated[Path, typer.Argument(help="Webcam frame of the plate (fiducials visible).")],
    hr_size: Annotated[int, typer.Option("--hr-size", help="Side of the HR plate grid in pixels.")],
    scale: Annotated[int, typer.Option("--scale", help="HR/LR scale; the registered image is hr_size/scale pixels.")],
    out: Annotated[Path, typer.Option("--out", help="Calibration JSON to write.")],
    reference: Annotated[Path | None, typer.Option(
        "--reference", help="HR or LR plate image: fiducials and ring parts to match.")] = None,
    fiducials: Annotated[str | None, typer.Option(
        "--fiducials", help="HR-grid fiducial centres 'x,y;x,y;...'.")] = None,
    build_json: Annotated[Path | None, typer.Option(
        "--build-json", help="Take HR fiducial centres (fiducials_hr) from a build.json.")] = None,
    corners: Annotated[str | None, typer.Option(
        "--corners", help="Webcam pixels of the plate corners TL;TR;BR;BL (manual).")] = None,
    flat: Annotated[Path | None, typer.Option(
        "--flat", help="Webcam frame of a uniform powder layer, for the flat field.")] = None,
    config: Annotated[Path | None, typer.Option("--config", help="Box YAML config (calib section).")] = None,
) -> None:
    """Compute a calibration from WEBCAM_IMG and write it to --out."""
    from calib.errors import CalibrationError
    from calib.register import register

    cfg = load_config_or_exit(config).calib
    pts_hr = _build_fiducials(build_json) if build_json is not None else _points(fiducials, "--fiducials")
    try:
        cal = register(
            _read(webcam_img), hr_size, scale, cfg,
            reference=_read(reference) if reference else None, points_hr=pts_hr,
            points_webcam=_points(corners, "--corners"), flat_image=_read(flat) if flat else None,
        )
    except CalibrationError as exc:
        typer.echo(f"error: {webcam_img}: {exc}", err=True)
        raise typer.Exit(1) from exc
    cal.save(out)
    typer.echo(f"{out}: {cal.method}, {cal.fit['points']} points, reprojection RMS "
               f"{cal.fit['rms_reprojection_webcam_px']:.3f} webcam px, LR {cal.lr_size}x{cal.lr_size} "
               f"at {cal.pitch_um:.1f} um/px")


def apply_cmd(
    calib_file: Annotated[Path, typer.Argument(help="Calibration JSON.")],
    images: Annotated[list[Path], typer.Argument(help="Webcam frames to register.")],
    out: Annotated[Path, typer.Option("--out", help="Folder for the registered LR PNGs (same names).")],
) -> None:
    """Register webcam frames onto the plate grid; bad files are reported, the rest still processed."""
    import cv2

    from calib.errors import CalibrationError
    from calib.register import Calibration

    try:
        cal = Calibration.load(calib_file)
    except CalibrationError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    out.mkdir(parents=True, exist_ok=True)
    bad = 0
    for p in images:
        img = cv2.imread(str(p), cv2.IMREAD_GRAYSCALE)
        try:
            if img is None:
                raise CalibrationError("cannot read image (missing, truncated or not an image)")
            cv2.imwrite(str(out / (p.stem + ".png")), cal.apply(img))
        except CalibrationError as exc:
            typer.echo(f"error: {p}: {exc}", err=True)
            bad += 1
    if bad:
        raise typer.Exit(1)


def measure_cmd(
    build_dir: Annotated[Path, typer.Argument(help="Sim build folder (build.json, webcam/, hr/, lr/).")],
    calib_file: Annotated[Path | None, typer.Option(
        "--calib", help="Calibration to check; default: register on the first layer.")] = None,
    k1: Annotated[float, typer.Option(
        help="Add radial lens distortion k1 to the webcam frames (tests the deformation map).")] = 0.0,
    hough: Annotated[str, typer.Option(help="Deformation refinement when registering: auto, on, off.")] = "auto",
    overlay: Annotated[Path | None, typer.Option(
        help="Write an overlay PNG (true LR vs registered, and the difference).")] = None,
    json_out: Annotated[Path | None, typer.Option("--json", help="Write the numbers as JSON.")] = None,
) -> None:
    """Registration error on a sim build against its true homography and lr/ images (LR pixels)."""
    from calib.measure import measure_build

    res = measure_build(build_dir, calib_file, k1=k1, hough=hough, overlay_path=overlay)
    typer.echo(json.dumps(res, indent=1))
    if json_out is not None:
        json_out.write_text(json.dumps(res, indent=1) + "\n")


COMMANDS = {"register": register_cmd, "apply": apply_cmd, "measure": measure_cmd}


def register(app: typer.Typer) -> None:
    """Add the `calib` command group."""
    calib_app = typer.Typer(help="Webcam-to-plate registration (fiducials/corners homography + Hough-circle "
                                 "deformation map).", no_args_is_help=True)
    for name, command in COMMANDS.items():
        calib_app.command(name)(command)
    app.add_typer(calib_app, name="calib")
