"""The limits that keep a policy's check and evaluation cheap and bounded.

Cedar has no loops and no recursion, so evaluation time grows with the size of the policies and
of the entity set; these caps bound both. A policy above them is refused when it is checked, an
evaluation above them is refused before the engine runs.
"""

from __future__ import annotations

MAX_POLICY_BYTES = 8 * 1024  # one policy document (UTF-8)
MAX_STATEMENTS = 16  # permit/forbid statements in one policy document
MAX_POLICIES = 64  # policy documents in one evaluation
MAX_ENTITIES = 128  # entities in one evaluation
MAX_ID = 128  # characters of a policy id or an entity id
MAX_SET = 64  # members of a set attribute
