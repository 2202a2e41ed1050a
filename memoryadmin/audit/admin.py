from django.contrib import admin

from .models import AuditEvent


@admin.register(AuditEvent)
class AuditEventAdmin(admin.ModelAdmin):
    """Read-only: the audit log is append-only everywhere."""

    list_display = ["created_at", "username", "action", "outcome", "connection_name", "session_key"]
    list_filter = ["action", "outcome", "connection_name"]
    search_fields = ["username", "session_key", "request_id"]
    date_hierarchy = "created_at"

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
