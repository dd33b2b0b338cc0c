"""The contract between client, server and sync: schemas, wire messages, errors, codecs.

Imports only pyarrow and the standard library, and does no I/O.
"""

from .codecs import (
    CODEC_LM,
    CODEC_NONE,
    CODEC_SEALED,
    CODEC_ZSTD,
    CODEC_ZSTD_DICT,
    CODECS,
    DICTIONARY_KIND,
    SYSTEM_KINDS,
    Codec,
    dictionary_id_of,
)
from .errors import *  # noqa: F403 - the hierarchy is public as a whole
from .errors import __all__ as _error_names
from .ids import HybridClock, hlc_pack, hlc_unpack, new_id
from .record import (
    DEFAULT_KIND,
    EXTERNAL_EMBED_MODEL,
    DEFAULT_TENANT,
    HIT_SCHEMA,
    LOCAL_TIERS,
    PRIVACY_LEVELS,
    RECORD_SCHEMA,
    SCHEMA_VERSION,
    SYNCED_TIERS,
    TIERS,
    schema_version_of,
)
from .rights import (
    MAX_CLEARANCE,
    OWNER,
    READERS_KEY,
    SHARED_TIER,
    Grant,
    View,
    check_readers,
    readers_of,
)
from .scenes import (
    CHANNEL_GROUPS,
    EPISODE_KIND,
    EPISODE_SCHEMA,
    EVENTS_SCHEMA,
    KEYFRAMES_SCHEMA,
    MOTION_SCHEMA,
    OBJECTS_SCHEMA,
    SCENE_KIND,
    SCENE_SCHEMA_VERSION,
    SCENE_SCHEMAS,
    SCENE_TABLES,
    rotation_step_of,
)
from .policy import DEFAULT_SYNC_TIERS, SERVER_ROLES, check_tiers_allowed, parse_sync_tiers
from .validate import DEFAULT_LIMITS, Limits, validate_record_batch, validate_record_schema
from .wire import (
    ACTIONS,
    FIELD_FILTERS,
    FILTER_OPERATORS,
    SEARCH_MODES,
    WIRE_VERSION,
    DEFAULT_PORT,
    PUT_PATH,
    REENCODE_PATH,
    IdsRequest,
    PutAck,
    PutCommit,
    ScanRequest,
    SearchRequest,
    StatsRequest,
    SyncAccept,
    SyncFinish,
    SyncOpen,
    SyncSummary,
    SYNC_ROLES,
    decode_message,
    validate_where,
)

__all__ = [
    *_error_names,
    "CODEC_LM", "CODEC_NONE", "CODEC_SEALED", "CODEC_ZSTD", "CODEC_ZSTD_DICT", "CODECS", "Codec",
    "DICTIONARY_KIND", "SYSTEM_KINDS", "dictionary_id_of",
    "HybridClock", "hlc_pack", "hlc_unpack", "new_id",
    "DEFAULT_KIND", "EXTERNAL_EMBED_MODEL", "DEFAULT_TENANT", "HIT_SCHEMA", "LOCAL_TIERS", "PRIVACY_LEVELS",
    "RECORD_SCHEMA", "SCHEMA_VERSION", "SYNCED_TIERS", "TIERS", "schema_version_of",
    "MAX_CLEARANCE", "OWNER", "READERS_KEY", "SHARED_TIER", "Grant", "View", "check_readers",
    "readers_of",
    "CHANNEL_GROUPS", "EPISODE_KIND", "EPISODE_SCHEMA", "EVENTS_SCHEMA", "KEYFRAMES_SCHEMA",
    "MOTION_SCHEMA", "OBJECTS_SCHEMA", "SCENE_KIND", "SCENE_SCHEMA_VERSION", "SCENE_SCHEMAS",
    "SCENE_TABLES", "rotation_step_of",
    "DEFAULT_SYNC_TIERS", "SERVER_ROLES", "check_tiers_allowed", "parse_sync_tiers",
    "DEFAULT_LIMITS", "Limits", "validate_record_batch", "validate_record_schema",
    "ACTIONS", "FIELD_FILTERS", "FILTER_OPERATORS", "SEARCH_MODES", "WIRE_VERSION", "DEFAULT_PORT", "PUT_PATH", "REENCODE_PATH",
    "IdsRequest", "PutAck", "PutCommit", "ScanRequest", "SearchRequest", "StatsRequest",
    "SyncAccept", "SyncFinish", "SyncOpen", "SyncSummary", "SYNC_ROLES",
    "decode_message", "validate_where",
]
