"""The three roles, as Django groups of permissions.

The groups are made by data migrations (accounts/migrations), which freeze
their own copies; this is the current truth, checked against them by a test.
"""

VIEWER = "Viewer"
OPERATOR = "Operator"
ADMIN = "Admin"

VIEWER_PERMISSIONS = ["accounts.view_session"]
OPERATOR_PERMISSIONS = VIEWER_PERMISSIONS + [
    "accounts.expire_session",
    "accounts.clear_session",
    "accounts.summarize_session",
    "accounts.run_bulk_job",
    "accounts.redact_session",
]
ADMIN_PERMISSIONS = OPERATOR_PERMISSIONS + [
    "accounts.manage_legal_hold",
    "accounts.manage_retention",
    "connections.view_connection",
    "connections.add_connection",
    "connections.change_connection",
    "connections.delete_connection",
    "audit.view_auditevent",
    "summaries.view_summarizersettings",
    "summaries.change_summarizersettings",
]
ROLE_PERMISSIONS = {VIEWER: VIEWER_PERMISSIONS, OPERATOR: OPERATOR_PERMISSIONS, ADMIN: ADMIN_PERMISSIONS}
