"""The sync protocol itself: pure, no I/O and no clock (specified in ``sync/PROTOCOL.md``).

``reconcile`` is range-based set reconciliation over item sets (fingerprints,
id lists, what each side lacks); ``frames`` is how its messages and controls
ride in a Flight ``do_exchange``. Both the daemon and the server's half of a
round import this package, and it imports nothing of either.
"""

from .frames import Control, Incoming, decode_frame, encode_frame, read_frame
from .reconcile import ItemSet, Message, Reconciler, item_id

__all__ = ["Message", "Reconciler", "ItemSet", "item_id", "encode_frame", "decode_frame",
           "read_frame", "Control", "Incoming"]  # fmt: skip
