"""The three roles, as Django groups of permissions (created by a migration)."""

VIEWER = "Viewer"
OPERATOR = "Operator"
ADMIN = "Admin"

VIEWER_PERMISSIONS = ["accounts.view_session"]
OPERATOR_PERMISSIONS = VIEWER_PERMISSIONS + [
    "accounts.expire_session",
    "accounts.clear_session",
    "accounts.summarize_session",
    "accounts.run_bulk_job",
]
ADMIN_PERMISSIONS = OPERATOR_PERMISSIONS + [
    "connections.view_connection",
    "connections.add_connection",
    "connections.change_connection",
    "connections.delete_connection",
    "audit.view_auditevent",
]
ROLE_PERMISSIONS = {VIEWER: VIEWER_PERMISSIONS, OPERATOR: OPERATOR_PERMISSIONS, ADMIN: ADMIN_PERMISSIONS}
