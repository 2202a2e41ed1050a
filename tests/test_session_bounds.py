"""Numbers in links are bounded where the link is read: a 400 that says what is wrong, never a store error."""

import pytest

from memoryadmin.dashboard.converters import encode_key

from .factories import write_langchain_session

pytestmark = pytest.mark.django_db

KEY = "chat-1"
T = encode_key(KEY)


@pytest.fixture
def session(store):
    write_langchain_session(store, KEY, ["hello", "hi"])


@pytest.mark.parametrize(
    ("path", "says"),
    [
        (f"/sessions/{T}/?before={10**25}", "a message position (before) is a whole number from 0 to"),
        (f"/sessions/{T}/?before=-1", "a message position (before) is a whole number from 0 to"),
        (f"/sessions/{T}/?before=soon", "a message position (before) is a whole number from 0 to"),
        (f"/sessions/{T}/messages/{2**63}/raw/", "a message number is a whole number from 0 to"),
        (f"/sessions/{T}/messages/{10**40}/raw/", "a message number is a whole number from 0 to"),
        (f"/?cursor={10**39}", "a scan position (cursor) is a whole number from 0 to 18446744073709551615"),
        (f"/?cursor={2**64}", "a scan position (cursor) is a whole number from 0 to 18446744073709551615"),
        ("/?cursor=abc", "a scan position (cursor)"),
    ],
)
def test_out_of_range_numbers_are_a_clear_400(web, session, path, says):
    response = web.get(path)
    assert response.status_code == 400
    assert says in response.content.decode()


@pytest.mark.parametrize(
    "path",
    [
        f"/sessions/{T}/?before={2**63 - 2}",  # the largest position: read as "before the whole list"
        f"/?cursor={2**64 - 1}",
    ],
)
def test_the_largest_numbers_in_range_reach_the_store_without_error(web, session, path):
    assert web.get(path).status_code == 200


def test_the_largest_message_number_in_range_is_a_plain_404(web, session):
    response = web.get(f"/sessions/{T}/messages/{2**63 - 2}/raw/")
    assert response.status_code == 404 and "has no message" in response.content.decode()
