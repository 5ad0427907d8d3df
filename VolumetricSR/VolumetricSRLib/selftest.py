"""The VolumetricSR module's self-test, run inside Slicer (ctest, *Reload and Test*) and against the
stand-in: MRHead made thick, super-resolved with B-spline, geometry and values checked; a background
run and its cancel; the trust maps; a tiny TVSRN and a short self-supervised run.

Each check is a function of the module's ``ScriptedLoadableModuleTest`` (``test``: its assertions and
``delayDisplay``) and its logic class (``Logic``: the console API under test); the module file's
``test_*`` methods call them.
"""
import os
import tempfile
import time
import unittest

import numpy as np
import slicer
import vtk

from . import scene


def run_checks(test) -> None:
    """*Reload and Test*: every ``test_*`` method of ``test``'s class run as ctest runs them
    (``slicer.testing.runUnitTest``: each its own case after ``setUp``, a skip reported as a skip);
    raises if one fails."""
    cases = unittest.TestLoader().loadTestsFromTestCase(type(test))
    for case in cases:
        if hasattr(test, "messageDelay"):
            case.messageDelay = test.messageDelay
    result = unittest.TextTestRunner(verbosity=2).run(cases)
    if not result.wasSuccessful():
        raise AssertionError(f"{type(test).__name__}: {len(result.failures) + len(result.errors)} check(s) failed")


def skip_without_torch(test) -> None:
    """Skip the calling check where PyTorch does not import (a Slicer without it, e.g. a build machine)."""
    from volumetricsr.methods import TORCH_PROBLEM

    if TORCH_PROBLEM:
        test.skipTest(f"PyTorch does not import here ({TORCH_PROBLEM})")


def thick_mrhead(factor=4):
    """MRHead with every ``factor``-th slice along K: a thick-slice volume and its thin reference."""
    import SampleData

    thin = SampleData.SampleDataLogic().downloadMRHead()
    volume = scene.volume_from_node(thin)
    k = volume.spacing[2] * factor
    thick = volume.with_array(volume.array[::factor].copy(), spacing=(*volume.spacing[:2], k))
    return thin, scene.create_output_node(thick, thin, "MRHead thick"), factor


def bspline_geometry_and_values(test, Logic):
    """B-spline gives the thin original's grid, points and (roughly) values."""
    thin, thick, factor = thick_mrhead()
    out = Logic().run(thick, method="bspline", spacing=thin.GetSpacing()[2])
    test.assertEqual(out.GetName(), "MRHead thick SR bspline")
    a_out = slicer.util.arrayFromVolume(out)
    n = slicer.util.arrayFromVolume(thick).shape[0]
    test.assertEqual(a_out.shape, ((n - 1) * factor + 1,) + slicer.util.arrayFromVolume(thin).shape[1:])
    np.testing.assert_allclose(out.GetOrigin(), thin.GetOrigin(), atol=1e-4)
    np.testing.assert_allclose(out.GetSpacing(), thin.GetSpacing(), rtol=1e-6)
    for ijk in ([0, 0, 0], [10, 20, a_out.shape[0] - 1]):      # same physical points as the thin original
        p_out, p_thin = [0, 0, 0, 1], [0, 0, 0, 1]
        m_out, m_thin = vtk.vtkMatrix4x4(), vtk.vtkMatrix4x4()
        out.GetIJKToRASMatrix(m_out)
        thin.GetIJKToRASMatrix(m_thin)
        m_out.MultiplyPoint(ijk + [1], p_out)
        m_thin.MultiplyPoint(ijk + [1], p_thin)
        np.testing.assert_allclose(p_out, p_thin, atol=1e-4)
    reference = slicer.util.arrayFromVolume(thin)[: a_out.shape[0]].astype(float)
    error = np.abs(a_out - reference).mean()
    test.assertLess(error, 0.25 * reference.std())
    test.delayDisplay(f"B-spline: mean absolute error {error:.2f} against the thin original")


def trust_maps(test, Logic):
    """Enforced consistency, the two maps beside the result, overlaid by Compare."""
    thin, thick, factor = thick_mrhead()
    results = {}
    out = Logic().run(thick, method="sinc", spacing=thin.GetSpacing()[2], results=results,
                                  enforce_consistency=True, consistency_map=True, confidence_map=True)
    maps = results["map_nodes"]
    test.assertLess(results["consistency"]["rms"], 1e-2 * slicer.util.arrayFromVolume(thick).std())
    test.assertEqual(slicer.util.arrayFromVolume(maps["confidence_map"]).shape, slicer.util.arrayFromVolume(out).shape)
    test.assertEqual(slicer.util.arrayFromVolume(maps["consistency_map"]).shape,
                     slicer.util.arrayFromVolume(thick).shape)
    test.assertGreater(float(np.max(slicer.util.arrayFromVolume(maps["confidence_map"]))), 0.0)
    scene.compare(thick, out, maps)
    test.delayDisplay(f"Consistency RMS after enforcing: {results['consistency']['rms']:.3g}; maps overlaid")


def background_run_and_cancel(test, Logic):
    """A background run cancelled at once makes nothing."""
    thin, thick, _ = thick_mrhead()
    logic = Logic()
    before = slicer.mrmlScene.GetNumberOfNodes()
    job = logic.prepare(thick, "sinc", 0.25)
    outcome = []
    task = logic.start(job, on_done=outcome.append, on_cancelled=lambda: outcome.append("cancelled"),
                       on_error=lambda e, tb: outcome.append(tb))
    task.cancel()
    deadline = time.time() + 60
    while task.poll() and time.time() < deadline:
        slicer.app.processEvents()
        time.sleep(0.02)
    test.assertEqual(outcome, ["cancelled"])
    test.assertEqual(slicer.mrmlScene.GetNumberOfNodes(), before)


def tiny_model(test, Logic):
    """A tiny TVSRN (random weights, written as a model card in a temporary models folder) and a short
    self-supervised run, through the same logic the panel uses: network methods end to end."""
    skip_without_torch(test)
    import torch
    from volumetricsr.compute.networks.tvsrn import TVSRN
    from volumetricsr.compute.export import write_model

    tiny = dict(factor=5, depth=4, channels=4, heads=2, window=4, group=4, tab_window=[2, 4],
                enc_layers=1, tab_layers=1, dec_layers=1)
    previous = os.environ.get("VOLUMETRICSR_MODELS")
    with tempfile.TemporaryDirectory() as folder:
        os.environ["VOLUMETRICSR_MODELS"] = folder
        try:
            torch.manual_seed(0)
            write_model(folder, "selftest-tiny", TVSRN(**tiny).state_dict(), {
                "method": "tvsrn", "architecture": {"name": "tvsrn", "args": tiny}, "native_factor": 5,
                "modality": "CT", "normalization": {"kind": "window", "low": -1024, "high": 2048},
                "training_data": "none: random weights for the self-test"})
            thin, thick, factor = thick_mrhead(5)
            with test.assertRaisesRegex(Exception, "is a CT model"):     # MRHead is an MR volume
                Logic().run(thick, method="tvsrn", model="selftest-tiny", device="auto")
            out = Logic().run(thick, method="tvsrn", model="selftest-tiny", device="auto",
                              spacing=thin.GetSpacing()[2], window=(4, 64, 64), force=True)
            n = slicer.util.arrayFromVolume(thick).shape[0]
            test.assertEqual(slicer.util.arrayFromVolume(out).shape[0], (n - 1) * factor + 1)
            np.testing.assert_allclose(out.GetOrigin(), thick.GetOrigin(), atol=1e-4)
            test.assertTrue(np.isfinite(slicer.util.arrayFromVolume(out)).all())
            own = Logic().run(thick, method="selfsr", device="auto", iterations=20)
            np.testing.assert_allclose(own.GetOrigin(), thick.GetOrigin(), atol=1e-4)
        finally:
            if previous is None:
                os.environ.pop("VOLUMETRICSR_MODELS", None)
            else:
                os.environ["VOLUMETRICSR_MODELS"] = previous
    test.delayDisplay("Tiny TVSRN and self-supervised runs passed")
