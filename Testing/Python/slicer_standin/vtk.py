"""Stand-in for ``vtk``: vtkMatrix4x4's element access and point product, and the ModifiedEvent name (see README.md)."""


class vtkCommand:
    ModifiedEvent = "ModifiedEvent"


class vtkMatrix4x4:
    def __init__(self):
        self._m = [[1.0 if r == c else 0.0 for c in range(4)] for r in range(4)]

    def GetElement(self, r, c):
        return self._m[r][c]

    def SetElement(self, r, c, value):
        self._m[r][c] = float(value)

    def DeepCopy(self, other):
        self._m = [[other.GetElement(r, c) for c in range(4)] for r in range(4)]

    def MultiplyPoint(self, point, out):
        for r in range(4):
            out[r] = sum(self._m[r][c] * point[c] for c in range(4))
