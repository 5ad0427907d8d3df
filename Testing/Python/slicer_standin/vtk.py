"""Stand-in for ``vtk``: vtkMatrix4x4's element access and point product, vtkCollection, and the
ModifiedEvent name (see README.md)."""


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


class vtkCollection:
    """Items by traversal, index and iteration (no ``len``, no ``[]``, as in VTK's Python). One
    returned by a C++ method that made it (``vtkMRMLScene::GetNodesByClass``) holds a reference for
    the caller, which the caller must give back with ``UnRegister`` or it leaks: ``released`` says
    whether it was."""

    def __init__(self, items=()):
        self._items, self._next, self.released = list(items), 0, False

    def GetNumberOfItems(self):
        return len(self._items)

    def AddItem(self, item):
        self._items.append(item)

    def RemoveAllItems(self):
        self._items.clear()

    def GetItemAsObject(self, i):
        return self._items[i]

    def InitTraversal(self):
        self._next = 0

    def GetNextItemAsObject(self):
        self._next += 1
        return self._items[self._next - 1] if self._next <= len(self._items) else None

    def __iter__(self):
        return iter(list(self._items))

    def UnRegister(self, owner):
        self.released = True
