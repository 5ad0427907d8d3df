"""Scene glue for sequences (cine MR, multi-phase CT, DCE): a Sequence node of scalar volumes in, a
Sequence of results out, browsed in sync with the input.

In Slicer a 4-D file or a multi-frame DICOM series loads as a Sequence node, a Sequence browser and
the browser's proxy volume, the one volume lists show (it holds the frame shown). So the panel takes
a sequence through its proxy (:func:`input_sequence`). The result goes into the input's browser, as
Slicer's own Crop Volume Sequence puts its output, so that one player moves input and result
together (a new browser where the input has none).

Slicer calls made here (faked by Testing/Python/slicer_standin/slicer/sequences.py): the sequence
node's index (name, unit, type, values) and data nodes (``GetNumberOfDataNodes``, ``GetNthDataNode``,
``SetDataNodeAtValue``), the browser's ``SetAndObserveMasterSequenceNodeID``,
``AddSynchronizedSequenceNodeID``, ``RemoveSynchronizedSequenceNode``, ``GetProxyNode``,
``GetSequenceNode``, and ``slicer.modules.sequences`` (``logic().GetFirstBrowserNodeForProxyNode``,
``GetFirstBrowserNodeForSequenceNode``, ``showSequenceBrowser``).
"""
from __future__ import annotations

import slicer

from . import scene


def sequences_logic():
    """The Sequences module's logic, or None where Slicer runs without that module."""
    module = getattr(getattr(slicer, "modules", None), "sequences", None)
    return module.logic() if module is not None else None


def is_sequence(node) -> bool:
    return node is not None and node.IsA("vtkMRMLSequenceNode")


def sequence_of_proxy(node):
    """The sequence whose frame ``node`` shows (``node`` is a browser's proxy volume), or None."""
    logic = sequences_logic()
    browser = logic.GetFirstBrowserNodeForProxyNode(node) if logic is not None and node is not None else None
    return browser.GetSequenceNode(node) if browser is not None else None


def browser_of(sequence):
    logic = sequences_logic()
    return logic.GetFirstBrowserNodeForSequenceNode(sequence) if logic is not None else None


def proxy_of(sequence):
    """The volume that shows ``sequence``'s selected frame (its browser's proxy), or None."""
    browser = browser_of(sequence)
    return browser.GetProxyNode(sequence) if browser is not None else None


def shown_node(node):
    """What the views show of ``node``: a sequence's proxy volume, else the node itself."""
    return proxy_of(node) if is_sequence(node) else node


def input_sequence(node, all_frames: bool = False):
    """The sequence a run of ``node`` takes: ``node`` itself when it is a sequence, the sequence it is
    the proxy of when ``all_frames``; None for a single volume."""
    if is_sequence(node):
        return node
    return sequence_of_proxy(node) if all_frames else None


def describe_frame(sequence, t: int) -> str:
    value = sequence.GetNthIndexValue(t)
    unit = f" {sequence.GetIndexUnit()}" if sequence.GetIndexUnit() else ""
    return f"frame {t} ({sequence.GetIndexName()} {value}{unit})"


def frames_from_sequence(sequence) -> list:
    """Private copies of every frame of ``sequence`` as core ``Volume`` s (``metadata['frame']``: its
    index and value). Raises one ``InputError`` unless every frame is a plain scalar volume on the
    grid of the first (a 4-D file holds frames on one grid)."""
    from volumetricsr.common.errors import InputError

    count = sequence.GetNumberOfDataNodes()
    if count == 0:
        raise InputError(f"The sequence {sequence.GetName()} has no frames.")
    frames = []
    for t in range(count):
        try:
            volume = scene.volume_from_node(sequence.GetNthDataNode(t), copy=True)
        except InputError as exc:
            raise InputError(f"The sequence {sequence.GetName()}, {describe_frame(sequence, t)}: {exc}") from None
        if frames and not volume.same_grid(frames[0]):
            raise InputError(f"The sequence {sequence.GetName()}: {describe_frame(sequence, t)} lies on another grid "
                             f"({volume.describe()}, origin {volume.origin}) than frame 0 ({frames[0].describe()}, "
                             f"origin {frames[0].origin}); the frames must share their size, spacing, origin and "
                             "orientation.")
        numeric = sequence.GetIndexType() == 0        # vtkMRMLSequenceNode::NumericIndex
        value = sequence.GetNthIndexValue(t)
        volume.metadata["frame"] = {"index": t, "value": float(value) if numeric and _is_number(value) else float(t)}
        frames.append(volume)
    return frames


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def frame_count(node) -> int:
    """The number of frames a run of ``node`` with all frames takes: its sequence's, else 1."""
    sequence = input_sequence(node, True)
    return sequence.GetNumberOfDataNodes() if sequence is not None else 1


def new_sequence(volumes, source, name: str):
    """A sequence node ``name`` holding ``volumes`` at ``source``'s index values (its index name,
    unit and type too); each frame is copied into it (SetDataNodeAtValue) from one scratch volume node
    outside the scene."""
    sequence = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSequenceNode", name)
    try:
        sequence.SetIndexName(source.GetIndexName())
        sequence.SetIndexUnit(source.GetIndexUnit())
        sequence.SetIndexType(source.GetIndexType())
        scratch = slicer.vtkMRMLScalarVolumeNode()
        for t, volume in enumerate(volumes):
            scratch.SetName(f"{name}_{t:04d}")        # as Slicer's volume sequence reader names frames
            scene.write_to_node(volume, scratch)
            sequence.SetDataNodeAtValue(scratch, source.GetNthIndexValue(t))
    except BaseException:
        slicer.mrmlScene.RemoveNode(sequence)
        raise
    return sequence


class SequenceOutput:
    """The nodes a sequence run makes, removed together by :meth:`remove` (a failure half-way)."""

    def __init__(self, browser, own_browser: bool):
        self.browser, self.own_browser, self.sequences = browser, own_browser, []

    def add(self, volumes, source, name: str):
        """A new sequence of ``volumes`` in the browser; returns it and its proxy volume."""
        sequence = new_sequence(volumes, source, name)
        self.sequences.append(sequence)
        if self.own_browser and len(self.sequences) == 1:
            self.browser.SetAndObserveMasterSequenceNodeID(sequence.GetID())
        else:
            self.browser.AddSynchronizedSequenceNodeID(sequence.GetID())
        sequences_logic().UpdateProxyNodesFromSequences(self.browser)     # as Slicer's sequence reader does
        return sequence, self.browser.GetProxyNode(sequence)

    def remove(self) -> None:
        """Every node made: the sequences, their proxy volumes (a proxy loses the browser's mark of
        its own copies at its first update, so the browser would leave it) and a browser made here."""
        for sequence in reversed(self.sequences):
            proxy = self.browser.GetProxyNode(sequence)
            if not self.own_browser:
                self.browser.RemoveSynchronizedSequenceNode(sequence.GetID())
            for node in (proxy, sequence):
                if node is not None and slicer.mrmlScene.GetNodeByID(node.GetID()) is not None:
                    slicer.mrmlScene.RemoveNode(node)
        if self.own_browser:
            slicer.mrmlScene.RemoveNode(self.browser)


def create_output_sequence(frames, maps: dict, source, name: str, like=None):
    """The result sequence ``name`` (made unique) of ``frames`` at ``source``'s index values, and a
    sequence per map (``maps``: key -> frames; ``<name> consistency`` ...), browsed with ``source``
    (in its browser, else in a new ``<name> browser``). The result's proxy volume is set up like
    ``like`` (the input's proxy: transform, window/level, folder), the maps' as the single-volume
    maps. Nothing is left on failure. Returns the result sequence and ``{key: map sequence}``."""
    browser = browser_of(source)
    own = browser is None
    if own:
        browser = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSequenceBrowserNode",
                                                     slicer.mrmlScene.GenerateUniqueName(f"{name} browser"))
    made = SequenceOutput(browser, own)
    try:
        output, proxy = made.add(frames, source, slicer.mrmlScene.GenerateUniqueName(name))
        if like is not None:
            scene.match_input(proxy, like)
        scene.place_beside(like if like is not None else source, output)
        map_sequences = {}
        for key, volumes in maps.items():
            suffix = scene.MAP_STYLES[key][0]
            map_sequences[key], map_proxy = made.add(volumes, source, f"{output.GetName()} {suffix}")
            scene.place_beside(proxy, map_sequences[key])
            scene.style_map(map_proxy, proxy, key, scene.map_top(volumes))
    except BaseException:
        made.remove()
        raise
    return output, map_sequences


def show(sequence) -> None:
    """Its proxy volume in the slice views, and its browser in the toolbar."""
    scene.show(proxy_of(sequence))
    module = getattr(slicer.modules, "sequences", None)
    if module is not None:
        module.showSequenceBrowser(browser_of(sequence))
