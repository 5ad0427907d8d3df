"""Stand-in for Slicer's Sequences (5.10): the sequence node, the sequence browser node and the calls
of the Sequences module's logic that the modules make, as Slicer's C++ does them (see ../README.md).

Followed: Libs/MRML/Core/vtkMRMLSequenceNode.cxx, Modules/Loadable/Sequences/MRML/
vtkMRMLSequenceBrowserNode.cxx and Modules/Loadable/Sequences/Logic/vtkSlicerSequencesLogic.cxx (tag
v5.10.0; the methods keep the "Master" names there, as in 5.12 and main: no "Primary" rename).
"""
from __future__ import annotations

import re
from contextlib import contextmanager

from . import vtkMRMLNode


def _string(value, what):
    """A ``const std::string&`` argument: VTK's Python wrapping takes a str only."""
    if not isinstance(value, str):
        raise TypeError(f"{what}: argument must be str, not {type(value).__name__}")
    return value


def _atof(text: str) -> float:
    """C's atof: the leading number of ``text``, 0.0 when there is none."""
    match = re.match(r"\s*[-+]?(\d+\.?\d*([eE][-+]?\d+)?|\.\d+([eE][-+]?\d+)?)", text)
    return float(match.group(0)) if match else 0.0


def _scene():
    from . import mrmlScene

    return mrmlScene


def _browsers():
    return _scene().nodes_of("vtkMRMLSequenceBrowserNode")


class vtkMRMLSequenceNode(vtkMRMLNode):
    """A sequence of data nodes, each a deep copy held in the sequence's own scene (never in the main
    scene), at an index value (a string; numeric ones sorted, compared within a tolerance)."""

    classes = ("vtkMRMLSequenceNode", "vtkMRMLStorableNode", "vtkMRMLNode")
    NumericIndex, TextIndex = 0, 1

    def __init__(self, name=""):
        super().__init__(name)
        self.index_name, self.index_unit, self.index_type, self.tolerance = "time", "s", self.NumericIndex, 0.001
        self.entries = []           # [index value, data node], in order

    # the index ---------------------------------------------------------------------------------
    def SetIndexName(self, name):
        self.index_name = _string(name, "SetIndexName")
        self.Modified()

    def GetIndexName(self):
        return self.index_name

    def SetIndexUnit(self, unit):
        self.index_unit = _string(unit, "SetIndexUnit")
        self.Modified()

    def GetIndexUnit(self):
        return self.index_unit

    def SetIndexType(self, index_type):
        self.index_type = int(index_type)
        self.Modified()

    def GetIndexType(self):
        return self.index_type

    def GetIndexTypeAsString(self):
        return {self.NumericIndex: "numeric", self.TextIndex: "text"}.get(self.index_type, "")

    def GetNumericIndexValueTolerance(self):
        return self.tolerance

    # the data nodes ----------------------------------------------------------------------------
    def GetItemNumberFromIndexValue(self, value, exactMatchRequired=True):
        """As Slicer: a numeric index by binary search within the tolerance (not exact: the item at
        or before the value), a text index by equal strings; -1 where none."""
        value, n = _string(value, "GetItemNumberFromIndexValue"), len(self.entries)
        if n == 0:
            return -1
        if self.index_type == self.NumericIndex:
            v, low, high = _atof(value), 0, n - 1
            low_v, high_v = _atof(self.entries[0][0]), _atof(self.entries[-1][0])
            if v <= low_v + self.tolerance:
                return -1 if v < low_v - self.tolerance and exactMatchRequired else low
            if v >= high_v - self.tolerance:
                return -1 if v > high_v + self.tolerance and exactMatchRequired else high
            while high - low > 1:
                middle = (low + high) // 2
                middle_v = _atof(self.entries[middle][0])
                if abs(v - middle_v) <= self.tolerance:
                    return middle
                if v > middle_v:
                    low = middle
                if v < middle_v:
                    high = middle
            if not exactMatchRequired:
                return low
        return next((i for i, (iv, _) in enumerate(self.entries) if iv == value), -1)

    def _insert_position(self, value):
        position = len(self.entries)
        if self.index_type == self.NumericIndex and self.entries:
            item = self.GetItemNumberFromIndexValue(value, False)
            position = item if _atof(value) < _atof(self.entries[item][0]) else item + 1
        return position

    def SetDataNodeAtValue(self, node, value):
        """A deep copy of ``node`` (CreateNodeInstance + CopyContent, named after its
        ``Sequences.BaseName`` or its name) at ``value``, replacing an item at that value; returns the
        copy. The first item's class goes into the ``DataNodeClassName`` attribute."""
        value = _string(value, "SetDataNodeAtValue")
        if node is None:
            return None
        base = node.GetAttribute("Sequences.BaseName") or node.GetName() or "Data"
        copy = node.CreateNodeInstance()
        copy.CopyContent(node)
        copy.SetName(base)
        copy.SetAttribute("Sequences.BaseName", base)
        item = self.GetItemNumberFromIndexValue(value)
        if item >= 0:
            self.entries[item][1] = copy
        else:
            self.entries.insert(self._insert_position(value), [value, copy])
        if self.GetNumberOfDataNodes() <= 1:
            self.SetAttribute("DataNodeClassName", self.GetDataNodeClassName())
        self.Modified()
        return copy

    def GetDataNodeAtValue(self, value, exactMatchRequired=True):
        item = self.GetItemNumberFromIndexValue(value, exactMatchRequired) if self.entries else -1
        return self.entries[item][1] if item >= 0 else None

    def RemoveDataNodeAtValue(self, value):
        item = self.GetItemNumberFromIndexValue(value)
        if item >= 0:
            del self.entries[item]
            self.Modified()

    def RemoveAllDataNodes(self):
        self.entries.clear()
        self.Modified()

    def GetNumberOfDataNodes(self):
        return len(self.entries)

    def GetNthDataNode(self, item):
        """The item's data node (in the sequence's scene); None (Slicer: an error) out of range."""
        return self.entries[item][1] if 0 <= item < len(self.entries) else None

    def GetNthIndexValue(self, item):
        """The item's index value; '' (Slicer: an error) out of range."""
        return self.entries[item][0] if 0 <= item < len(self.entries) else ""

    def GetDataNodeClassName(self):
        return self.entries[0][1].GetClassName() if self.entries else ""

    def Modified(self):
        """Browsers that synchronize this sequence hear it (vtkMRMLSequenceBrowserNode::ProcessMRMLEvents:
        the selected item made valid, then SequenceNodeModifiedEvent, on which the logic updates the
        proxy nodes)."""
        for browser in _browsers():
            if browser.IsSynchronizedSequenceNodeID(self.GetID(), True):
                browser._sequence_modified()


class _Synchronization:
    """vtkMRMLSequenceBrowserNode::SynchronizationProperties, with Slicer's defaults."""

    def __init__(self):
        self.playback, self.recording, self.overwrite_proxy_name, self.save_changes = True, False, False, False
        self.missing_item_mode = vtkMRMLSequenceBrowserNode.MissingItemCreateFromPrevious


class vtkMRMLSequenceBrowserNode(vtkMRMLNode):
    """Browses sequences in sync: the master sequence (the first) sets the items; each synchronized
    sequence has a proxy node in the main scene showing its item at the selected index value. While
    the browser is in the scene the Sequences logic observes it: any change of it (or of one of its
    sequences) updates the proxy nodes (vtkSlicerSequencesLogic::ProcessMRMLNodesEvents)."""

    classes = ("vtkMRMLSequenceBrowserNode", "vtkMRMLNode")
    (MissingItemCreateFromPrevious, MissingItemCreateFromDefault, MissingItemSetToDefault, MissingItemIgnore,
     MissingItemDisplayHidden) = range(5)
    IndexDisplayAsIndex, IndexDisplayAsIndexValue = 0, 1

    def __init__(self, name=""):
        super().__init__(name)
        self.postfixes = []        # SynchronizationPostfixes: the master's first
        self.sequence_ids = {}     # postfix -> ID of the sequence ("sequenceNodeRef" + postfix)
        self.proxy_ids = {}        # postfix -> ID of its proxy node ("dataNodeRef" + postfix)
        self.properties = {}       # postfix -> _Synchronization
        self.last_postfix, self.selected, self.playback_active, self.recording_active = 0, -1, False, False
        self.index_display_mode = self.IndexDisplayAsIndexValue
        self._blocked, self._pending = 0, False

    # modification: MRMLNodeModifyBlocker, then the logic's observer -------------------------------
    @contextmanager
    def _modifying(self):
        self._blocked += 1
        try:
            yield
        finally:
            self._blocked -= 1
            if not self._blocked and self._pending:
                self._pending = False
                self.Modified()

    def Modified(self):
        if self._blocked:
            self._pending = True
        elif self in _scene().nodes:
            modules_logic().UpdateProxyNodesFromSequences(self)

    def _sequence_modified(self):
        if self.selected < 0 and self.GetNumberOfItems() > 0:
            self.SetSelectedItemNumber(0)
        elif self.selected >= self.GetNumberOfItems():
            self.SetSelectedItemNumber(self.GetNumberOfItems() - 1)
        if self in _scene().nodes:
            modules_logic().UpdateProxyNodesFromSequences(self)

    def _node_removed(self, node):
        """The scene removed ``node``: references to it go (vtkMRMLScene::RemoveNodeReferences), and a
        sequence's postfix with it (OnNodeReferenceRemoved); its proxy node stays in the scene."""
        for postfix in [p for p in self.postfixes if self.sequence_ids.get(p) == node.GetID()]:
            self.postfixes.remove(postfix)
            del self.sequence_ids[postfix]
        for postfix in [p for p, i in self.proxy_ids.items() if i == node.GetID()]:
            del self.proxy_ids[postfix]

    # references --------------------------------------------------------------------------------
    @staticmethod
    def _node(node_id):
        return _scene().GetNodeByID(node_id) if node_id else None

    def _postfix_of(self, sequence_id):
        return next((p for p in self.postfixes if self.sequence_ids.get(p) == sequence_id), "")

    def _sequence(self, postfix):
        return self._node(self.sequence_ids.get(postfix))

    def SetAndObserveMasterSequenceNodeID(self, sequence_id):
        """As Slicer: None removes every sequence; a sequence not browsed yet becomes the only one (the
        others are removed, the first item selected); a synchronized one is moved to the front.
        Returns its postfix."""
        if sequence_id is None:
            self.RemoveAllSequenceNodes()
            return ""
        master = self.GetMasterSequenceNode()
        if master is not None and master.GetID() == sequence_id:
            return self.postfixes[0] if self.postfixes else ""
        postfix = self._postfix_of(sequence_id)
        with self._modifying():
            if not postfix or master is None:
                self.RemoveAllSequenceNodes()
                postfix = self.AddSynchronizedSequenceNodeID(sequence_id)
                self.SetSelectedItemNumber(0 if self.GetNumberOfItems() > 0 else -1)
                return postfix
            value = master.GetNthIndexValue(self.selected)
            self.postfixes.remove(postfix)
            self.postfixes.insert(0, postfix)
            self.Modified()
            new = self._node(sequence_id)
            self.SetSelectedItemNumber(new.GetItemNumberFromIndexValue(value, False) if new is not None else
                                       0 if self.GetNumberOfItems() > 0 else -1)
            return postfix

    def GetMasterSequenceNode(self):
        return self._sequence(self.postfixes[0]) if self.postfixes else None

    def AddSynchronizedSequenceNodeID(self, sequence_id):
        """Browse ``sequence_id`` too (a new postfix; the playback on, changes not saved); returns its postfix."""
        postfix = self._postfix_of(sequence_id)
        if postfix:
            return postfix
        with self._modifying():
            while str(self.last_postfix) in self.postfixes:
                self.last_postfix += 1
            postfix = str(self.last_postfix)
            self.last_postfix += 1
            if not self.postfixes:
                self.SetSelectedItemNumber(0 if self.GetNumberOfItems() > 0 else -1)
            self.postfixes.append(postfix)
            self.sequence_ids[postfix] = sequence_id
            self.properties[postfix] = _Synchronization()
            self.Modified()
        return postfix

    def AddSynchronizedSequenceNode(self, sequence):
        """The overloads of Slicer: a sequence node, or (deprecated) its ID."""
        if sequence is None:
            return ""
        return self.AddSynchronizedSequenceNodeID(sequence if isinstance(sequence, str) else sequence.GetID())

    def RemoveSynchronizedSequenceNode(self, sequence_id):
        """Stop browsing it: its postfix and its proxy node (removed from the scene if the browser made
        it, ``proxyNodeCopy``)."""
        postfix = self._postfix_of(sequence_id)
        if not postfix:
            return
        with self._modifying():
            self.SetPlaybackActive(False)
            self.SetRecordingActive(False)
            self.postfixes.remove(postfix)
            del self.sequence_ids[postfix]
            self.RemoveProxyNode(postfix)
            self.Modified()

    def RemoveAllSequenceNodes(self):
        with self._modifying():
            for postfix in reversed(list(self.postfixes)):
                self.RemoveSynchronizedSequenceNode(self.sequence_ids.get(postfix))
            self.SetSelectedItemNumber(-1)

    def IsSynchronizedSequenceNodeID(self, sequence_id, includeMasterNode=False):
        postfixes = self.postfixes if includeMasterNode else self.postfixes[1:]
        return any(self.sequence_ids.get(p) == sequence_id for p in postfixes)

    def IsSynchronizedSequenceNode(self, sequence, includeMasterNode=False):
        if sequence is None:
            return False
        return self.IsSynchronizedSequenceNodeID(sequence if isinstance(sequence, str) else sequence.GetID(),
                                                 includeMasterNode)

    def GetNumberOfSynchronizedSequenceNodes(self, includeMasterNode=False):
        return max(len(self.postfixes) - (0 if includeMasterNode else 1), 0)

    def GetSynchronizedSequenceNodes(self, collection, includeMasterNode=False):
        """Into a vtkCollection (the std::vector overload is not wrapped for Python)."""
        collection.RemoveAllItems()
        for postfix in self.postfixes if includeMasterNode else self.postfixes[1:]:
            node = self._sequence(postfix)
            if node is not None:
                collection.AddItem(node)

    # items -------------------------------------------------------------------------------------
    def GetNumberOfItems(self):
        master = self.GetMasterSequenceNode()
        return master.GetNumberOfDataNodes() if master is not None else 0

    def SetSelectedItemNumber(self, item):
        if item != self.selected:
            self.selected = int(item)
            self.Modified()

    def GetSelectedItemNumber(self):
        return self.selected

    def SelectFirstItem(self):
        self.SetSelectedItemNumber(0 if self.GetNumberOfItems() > 0 else -1)
        return self.selected

    def SetPlaybackActive(self, active):
        if bool(active) != self.playback_active:
            self.playback_active = bool(active)
            self.Modified()

    def GetPlaybackActive(self):
        return self.playback_active

    def SetRecordingActive(self, active):
        if bool(active) != self.recording_active:
            self.recording_active = bool(active)
            self.Modified()

    def GetRecordingActive(self):
        return self.recording_active

    def SetIndexDisplayMode(self, mode):
        self.index_display_mode = int(mode)
        self.Modified()

    def GetIndexDisplayMode(self):
        return self.index_display_mode

    # per-sequence settings ---------------------------------------------------------------------
    def _property(self, sequence):
        postfix = self._postfix_of(sequence.GetID()) if sequence is not None else ""
        return self.properties.get(postfix)

    def _set(self, sequence, name, value):
        found = self._property(sequence)
        if found is not None and getattr(found, name) != value:
            setattr(found, name, value)
            self.Modified()

    def GetPlayback(self, sequence):
        found = self._property(sequence)
        return found is not None and found.playback

    def SetPlayback(self, sequence, playback):
        self._set(sequence, "playback", bool(playback))

    def GetSaveChanges(self, sequence):
        found = self._property(sequence)
        return found is not None and found.save_changes

    def SetSaveChanges(self, sequence, save):
        self._set(sequence, "save_changes", bool(save))

    def GetOverwriteProxyName(self, sequence):
        found = self._property(sequence)
        return found is not None and found.overwrite_proxy_name

    def SetOverwriteProxyName(self, sequence, overwrite):
        self._set(sequence, "overwrite_proxy_name", bool(overwrite))

    def GetMissingItemMode(self, sequence):
        found = self._property(sequence)
        return found.missing_item_mode if found is not None else -1

    # proxy nodes -------------------------------------------------------------------------------
    def GetProxyNode(self, sequence):
        postfix = self._postfix_of(sequence.GetID()) if sequence is not None else ""
        return self._node(self.proxy_ids.get(postfix)) if postfix else None

    def GetSequenceNode(self, proxy):
        if proxy is None:
            return None
        return next((self._sequence(p) for p in self.postfixes if self.proxy_ids.get(p) == proxy.GetID()), None)

    def GetAllProxyNodes(self, collection):
        collection.RemoveAllItems()
        for postfix in self.postfixes:
            node = self._node(self.proxy_ids.get(postfix))
            if node is not None:
                collection.AddItem(node)

    def IsProxyNodeID(self, node_id):
        return any(self.proxy_ids.get(p) == node_id and self._node(node_id) is not None for p in self.postfixes)

    def AddProxyNode(self, source, sequence, copy=True):
        """As Slicer: ``copy`` makes a new node of the source's class in the main scene, named after the
        sequence and marked ``proxyNodeCopy`` (the browser removes it with the sequence); it replaces
        the sequence's old proxy node. Returns the proxy node."""
        if sequence is None:
            return None
        with self._modifying():
            postfix = self._postfix_of(sequence.GetID()) or self.AddSynchronizedSequenceNodeID(sequence.GetID())
            if source.GetAttribute("Sequences.BaseName") is None:
                source.SetAttribute("Sequences.BaseName", source.GetName())
            proxy = source
            if copy:
                proxy = _scene().AddNewNodeByClass(source.GetClassName())
                named = sequence.GetAttribute("Sequences.Source")
                proxy.SetName(f"{self.GetName()}-{named}" if named is not None else sequence.GetName())
                proxy.SetAttribute("proxyNodeCopy", "true")
            if self.proxy_ids.get(postfix) != proxy.GetID():
                self.RemoveProxyNode(postfix)
                self.proxy_ids[postfix] = proxy.GetID()
                self.Modified()
        return proxy

    def RemoveProxyNode(self, postfix):
        proxy = self._node(self.proxy_ids.pop(postfix, None))
        if proxy is not None and proxy.GetAttribute("proxyNodeCopy") is not None:
            _scene().RemoveNode(proxy)

    def RemoveAllProxyNodes(self):
        for postfix in list(self.postfixes):
            self.RemoveProxyNode(postfix)


class vtkSlicerSequencesLogic:
    """``slicer.modules.sequences.logic()``: the calls the modules make."""

    def __init__(self):
        self._updating = set()

    def UpdateProxyNodesFromSequences(self, browser):
        """As Slicer, for a browser not recording and changes not saved (the defaults): each sequence
        played back shows its item at the master's selected index value (or the one before it) in its
        proxy node, made on first use (AddProxyNode, then its default display nodes) and deep-copied
        into (CopyContent: voxels and geometry, not the proxy's transform nor display); renamed
        ``<sequence> [<index name>=<value><unit>]`` only where OverwriteProxyName is on."""
        if browser is None or browser in self._updating or browser.GetRecordingActive():
            return
        master = browser.GetMasterSequenceNode()
        if master is None:
            browser.RemoveAllProxyNodes()
            return
        self._updating.add(browser)
        try:
            item = browser.GetSelectedItemNumber()
            value = master.GetNthIndexValue(item) if 0 <= item < browser.GetNumberOfItems() else "0"
            for postfix in list(browser.postfixes):
                sequence = browser._sequence(postfix)
                if sequence is None or not browser.GetPlayback(sequence):
                    continue
                source = sequence.GetDataNodeAtValue(value, False)
                if source is None:
                    continue
                proxy = browser.GetProxyNode(sequence)
                if proxy is not None and proxy.GetClassName() != source.GetClassName():
                    proxy = None
                created = proxy is None
                if created:
                    proxy = browser.AddProxyNode(source, sequence)
                proxy.CopyContent(source, not browser.GetSaveChanges(sequence))
                if browser.GetOverwriteProxyName(sequence):
                    proxy.SetAttribute("Sequences.BaseName", sequence.GetName())
                    shown = (f"{sequence.GetIndexName()}={value}{sequence.GetIndexUnit()}"
                             if browser.GetIndexDisplayMode() == browser.IndexDisplayAsIndexValue
                             else f"{item + 1}/{sequence.GetNumberOfDataNodes()}")
                    proxy.SetName(f"{sequence.GetName()} [{shown}]")
                if created and hasattr(proxy, "CreateDefaultDisplayNodes"):
                    proxy.CreateDefaultDisplayNodes()     # CreateDefaultSequenceDisplayNodes
        finally:
            self._updating.discard(browser)

    @staticmethod
    def GetFirstBrowserNodeForSequenceNode(sequence):
        return next((b for b in _browsers() if b.IsSynchronizedSequenceNode(sequence, True)), None)

    @staticmethod
    def GetFirstBrowserNodeForProxyNode(proxy):
        if proxy is None:
            return None
        return next((b for b in _browsers() if b.IsProxyNodeID(proxy.GetID())), None)

    @staticmethod
    def GetBrowserNodesForSequenceNode(sequence, collection):
        collection.RemoveAllItems()
        for browser in _browsers():
            if browser.IsSynchronizedSequenceNode(sequence, True):
                collection.AddItem(browser)


def modules_logic():
    from . import modules

    return modules.sequences.logic()
