"""The cloud at scale: stateless replicas over a lake of record versions (``--lake URI``).

::

    store     LakeStore: the Store of a replica; writes planned against a tenant's cache,
              committed to the lake (group commit), then acknowledged and applied
    uri       where a lake lives: a folder, or s3://bucket/prefix?endpoint=...
    _log      one tenant's append-only Lance dataset
    _tenant   a tenant a replica serves: its DuckDBStore cache and how far it has read
    _objects  creation claims and the compaction lease (conditional puts)
"""

from .uri import LakeLocation, parse_lake

# LakeStore (``lake.store``) is imported only by a lake replica: it needs the [lake] extra.
__all__ = ["LakeLocation", "parse_lake"]
