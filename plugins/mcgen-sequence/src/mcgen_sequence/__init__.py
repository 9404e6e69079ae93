"""mcgen-sequence: an example mcgen plugin for 1-D sequence components.

The package registers, through mcgen's hooks (see :mod:`mcgen_sequence.plugin`):

* ``tcn``, a temporal convolutional encoder/decoder (:class:`TCNEncoder`, :class:`TCNDecoder`);
* ``oscillators``, a dataset of coherent waveforms (:func:`make_oscillators`).
"""

from mcgen_sequence.data import make_oscillators
from mcgen_sequence.tcn import TCNDecoder, TCNEncoder, TemporalBlock

__version__ = "0.1.0"

__all__ = ["TCNDecoder", "TCNEncoder", "TemporalBlock", "__version__", "make_oscillators"]
