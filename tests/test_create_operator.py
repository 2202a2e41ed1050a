import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    ("role", "group", "staff"), [("viewer", "Viewer", False), ("operator", "Operator", False), ("admin", "Admin", True)]
)
def test_creates_a_user_with_the_role(monkeypatch, role, group, staff):
    monkeypatch.setenv("NEW_PASSWORD", "a-long-enough-passphrase")
    call_command("create_operator", "sam", "--role", role, "--password-from-env", "NEW_PASSWORD")
    user = get_user_model().objects.get(username="sam")
    assert [g.name for g in user.groups.all()] == [group]
    assert user.check_password("a-long-enough-passphrase")
    assert user.is_staff is staff


def test_changing_the_role_of_an_existing_user(monkeypatch):
    monkeypatch.setenv("NEW_PASSWORD", "a-long-enough-passphrase")
    call_command("create_operator", "sam", "--role", "viewer", "--password-from-env", "NEW_PASSWORD")
    call_command("create_operator", "sam", "--role", "operator", "--password-from-env", "NEW_PASSWORD")
    assert [g.name for g in get_user_model().objects.get(username="sam").groups.all()] == ["Operator"]


def test_weak_or_missing_password_is_refused(monkeypatch):
    monkeypatch.setenv("WEAK", "123")
    with pytest.raises(CommandError):
        call_command("create_operator", "sam", "--role", "viewer", "--password-from-env", "WEAK")
    with pytest.raises(CommandError, match="empty or not set"):
        call_command("create_operator", "sam", "--role", "viewer", "--password-from-env", "UNSET_VAR_XYZ")
    assert not get_user_model().objects.filter(username="sam").exists()


def test_prompts_for_the_password(monkeypatch):
    answers = iter(["a-long-enough-passphrase", "a-long-enough-passphrase"])
    monkeypatch.setattr("getpass.getpass", lambda prompt: next(answers))
    call_command("create_operator", "pat", "--role", "admin")
    assert get_user_model().objects.get(username="pat").check_password("a-long-enough-passphrase")
