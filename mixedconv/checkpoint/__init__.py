"""Checkpoints: read them without running code, recognise what they are, adapt their
tensors to our backbones, load them with a report, export and convert them.

* :mod:`.safe_load`: ``torch.load(weights_only=True)`` with an allow-list of data-only
  globals, and mmengine's loader set to it (:func:`install_safe_loader`).
* :mod:`.recognise`: the file layout, the encoder's prefix, family and source layout.
* :mod:`.sources`: one adaptation function per source layout (renames and resizes).
* :mod:`.report`: what a load or conversion did.
* :mod:`.load`: pretrained backbone loads that refuse what does not fit.
* :mod:`.convert`: conversion to our names, and encoder export.
* :mod:`.whole`: whole released detectors and segmentors (detectron2, mmseg 0.x, ours),
  loaded into our recipe models with every tensor accounted for.
"""
from .convert import (Conversion, backbone_for, convert_checkpoint, convert_state_dict,
                      export_encoder)
from .errors import CheckpointError, CheckpointRefused
from .load import load_pretrained
from .recognise import (Encoder, describe_layout, encoder_family, find_encoder,
                        unwrap_state_dict)
from .report import LoadReport, compare_state_dict
from .safe_load import allow_list, install_safe_loader, safe_globals, safe_load
from .sources import SOURCES, Source
from .whole import (WHOLE_SOURCES, WholeLoadReport, WholeSource, convert_whole,
                    convert_whole_checkpoint, load_whole, load_whole_checkpoint)

__all__ = ['CheckpointError', 'CheckpointRefused', 'safe_load', 'allow_list', 'safe_globals',
           'install_safe_loader', 'describe_layout', 'unwrap_state_dict', 'encoder_family',
           'find_encoder', 'Encoder', 'Source', 'SOURCES', 'LoadReport', 'compare_state_dict',
           'load_pretrained', 'Conversion', 'backbone_for', 'convert_state_dict',
           'convert_checkpoint', 'export_encoder', 'WholeSource', 'WHOLE_SOURCES',
           'WholeLoadReport', 'convert_whole', 'convert_whole_checkpoint', 'load_whole',
           'load_whole_checkpoint']
