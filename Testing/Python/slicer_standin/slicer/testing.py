"""Stand-in for ``slicer.testing``, as Slicer's (Base/Python/slicer/testing.py): ctest runs a module's
self-test as ``slicer.testing.runUnitTest([binary dir, source dir], "<Module>")``
(``slicer_add_python_unittest`` in CMake/SlicerMacroPythonTesting.cmake), which loads every
``test*`` method of every TestCase class in the module by name: each runs as its own case
(setUp, the method, tearDown), and the class's ``runTest`` is never called. ctest starts that Slicer
with ``--testing``, so the tests run in testing mode (``slicer.app.testingEnabled()``): here
``runUnitTest`` turns it on for its run."""


def exitSuccess():
    pass


def exitFailure(message=""):
    raise Exception(message)


def runUnitTest(path, testname):
    import sys
    import unittest

    import slicer

    testing, slicer.app.testing = slicer.app.testing, True      # ctest's --testing
    try:
        if isinstance(path, str):
            sys.path.append(path)
        else:
            sys.path.extend(path)
        print("-------------------------------------------")
        print(f"path: {path}\ntestname: {testname}")
        print("-------------------------------------------")
        suite = unittest.TestLoader().loadTestsFromName(testname)
        result = unittest.TextTestRunner(verbosity=2).run(suite)
    finally:
        slicer.app.testing = testing
    if not result.wasSuccessful():
        exitFailure()
