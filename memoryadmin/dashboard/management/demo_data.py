"""Realistic demo data, written into the store through the app's own client.

Customer-support conversations (an online shop, a SaaS helpdesk, a travel
agent) generated from templates with a seeded `random.Random`, so a seed
always gives the same store. Each session is stored exactly as its writer
stores it (DESIGN.md, "What is in the store"):

- Flowise / LangChain JS: bare session id, `toDict` elements, LPUSH (newest first);
- LangChain Python: `message_store:<id>`, `message_to_dict` elements, LPUSH;
- LlamaIndex: `llamaindex:chat:<user>`, `ChatMessage.dict()` elements (old
  `content` and newer `blocks` shapes), RPUSH (oldest first).

Around them: one long session, one with malformed elements, one with an
awkward key name, keys that are not sessions, and summary hashes. Every
write goes in pipelines, so seeding takes a few round trips.
"""

import dataclasses
import json
import random
import unicodedata
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from memoryadmin.services.messages import parse_element

# Keep each pipeline well inside what one request to Upstash may carry (10 MB).
PIPELINE_COMMANDS = 1000
PIPELINE_BYTES = 1_000_000
# Elements per push command: the long session in one command would be one huge request.
ELEMENTS_PER_PUSH = 250

MODEL = "gpt-4o-mini-2024-07-18"
LONG_SESSION_KEY = "message_store:load-test-long-session"
MALFORMED_SESSION_KEY = "message_store:legacy-import-7f3a"
AWKWARD_SESSION_KEY = "support bot/2026 #42 100% ünïcødé?\nsecond line"
# The customer whose data an erasure search should find, in several sessions and formats.
ERASURE_CUSTOMER = ("Jane", "Doe")
# Session dates are fixed so that a seed always writes the same text.
FIRST_DAY = date(2026, 3, 2)


# --- What a conversation is, before any writer's format ----------------------


@dataclass(frozen=True)
class Call:
    id: str
    name: str
    args: dict


@dataclass(frozen=True)
class Turn:
    role: str  # system | human | ai | tool (LangChain's names; LlamaIndex's are mapped when writing)
    text: str
    image_url: str = ""  # a photo the customer attached
    call: Call | None = None  # the tool an ai turn calls, or the call a tool turn answers
    id: str = ""  # the model's run id, ai turns only


@dataclass(frozen=True)
class Tool:
    name: str
    args: dict  # templates, filled with the conversation's facts
    result: dict


@dataclass(frozen=True)
class Scenario:
    domain: str
    openings: tuple[str, ...]
    answers: tuple[str, ...]
    follow_ups: tuple[tuple[str, str], ...] = ()
    photo_openings: tuple[str, ...] = ()  # used instead of openings when the customer attaches a photo
    tool: Tool | None = None

    @property
    def mentions_email(self):
        return any("{email}" in text for text in self.openings)


SYSTEM_PROMPTS = {
    "shop": (
        "You are Nora, the support assistant of Northwind Outfitters, an online shop for clothing and "
        "outdoor gear. Be friendly and brief. Returns and exchanges are free within 30 days."
    ),
    "saas": (
        "You are the helpdesk assistant of Acme Cloud, a project management SaaS. Help with accounts, "
        "billing and integrations. Never ask for a password."
    ),
    "travel": (
        "You are Wanderly's travel assistant. Help customers with flights, hotels and bookings. "
        "Always quote fees before changing a booking."
    ),
}

ORDER_STATUS = Scenario(
    domain="shop",
    openings=(
        "Hi, where is my order {order}? It's been a week.",
        "Hello! Can you tell me when order {order} will arrive?",
        "my order {order} still hasnt arrived, whats going on??",
    ),
    tool=Tool(
        name="lookup_order",
        args={"order_id": "{order}"},
        result={
            "order_id": "{order}",
            "status": "in_transit",
            "carrier": "{carrier}",
            "tracking_number": "{tracking}",
            "estimated_delivery": "{eta}",
        },
    ),
    answers=(
        "Thanks for waiting, {first}! Order {order} is on its way with {carrier} (tracking number "
        "{tracking}) and should arrive by {eta}.",
        "Good news: order {order} has shipped and is in transit with {carrier}. Estimated delivery is "
        "{eta}; you can follow it with tracking number {tracking}.",
    ),
    follow_ups=(
        (
            "Can I have it delivered to my office instead?",
            "Once a parcel is in transit we can't change the address ourselves, but {carrier} lets you "
            "redirect it from their tracking page with number {tracking}.",
        ),
        (
            "What happens if I'm not home?",
            "{carrier} leaves a notice and tries again the next working day, or you can collect it from "
            "the nearest service point.",
        ),
    ),
)

PASSWORD_RESET = Scenario(
    domain="saas",
    openings=(
        "I'm locked out of my account, the e-mail is {email}.",
        "Password reset e-mails never arrive at {email}, can you help?",
    ),
    answers=(
        "I've sent a new reset link to {email}. It's valid for 30 minutes; please check your spam "
        "folder if it doesn't show up.",
    ),
    follow_ups=(
        (
            "Got it, thanks. Can I turn on two-factor authentication too?",
            "Yes: Settings → Security → Two-factor authentication, then scan the QR code with your authenticator app.",
        ),
    ),
)

SCENARIOS = (
    ORDER_STATUS,
    Scenario(
        domain="shop",
        openings=(
            "The {product} from order {order} arrived damaged. What can I do?",
            "Hi, my {product} (order {order}) came broken :(",
        ),
        photo_openings=(
            "The {product} from order {order} arrived with a tear in it, see the photo.",
            "Here's a photo of the {product} I received with order {order}. It's damaged.",
        ),
        answers=(
            "I'm so sorry about that, {first}. I've opened claim {ticket} and we'll send a replacement "
            "{product} free of charge. You don't need to send the damaged one back.",
            "Sorry to hear that! I can offer a full refund of €{amount} or a replacement {product}. "
            "Which would you prefer?",
        ),
        follow_ups=(
            (
                "A replacement please.",
                "Done: a replacement {product} ships within 2 working days. You'll get the tracking number by e-mail.",
            ),
            (
                "How long does a refund take?",
                "Refunds reach your account 5-7 working days after we process them.",
            ),
        ),
    ),
    Scenario(
        domain="shop",
        openings=(
            "I ordered the {product} in size {size} but it's too small. Can I exchange it?",
            "Can I swap the {product} from order {order} for a bigger size?",
        ),
        answers=(
            "Of course! Exchanges are free within 30 days. I've created return label {ticket} for order "
            "{order}; once the parcel is scanned we ship the new size. Which size would you like?",
        ),
        follow_ups=(
            (
                "One size up please.",
                "Noted, one size up. Your new {product} ships as soon as the return is scanned.",
            ),
            (
                "Do I have to pay for the return shipping?",
                "No, the label is prepaid. Just drop the parcel at any {carrier} point.",
            ),
        ),
    ),
    Scenario(
        domain="shop",
        openings=("I received the wrong item in order {order}. I ordered a {product}.",),
        photo_openings=("This is what came in order {order}. Definitely not the {product} I ordered!",),
        answers=(
            "Apologies for the mix-up, {first}! I've sent a prepaid return label to your e-mail and the "
            "correct {product} is already on its way. Reference: {ticket}.",
        ),
        follow_ups=(
            (
                "Can I keep the wrong one until the right one arrives?",
                "Sure, please just send it back within 14 days using the label.",
            ),
        ),
    ),
    Scenario(
        domain="shop",
        openings=(
            "I returned order {order} two weeks ago and still don't have my refund.",
            "Where is my refund for order {order}?",
        ),
        tool=Tool(
            name="get_refund_status",
            args={"order_id": "{order}"},
            result={
                "order_id": "{order}",
                "status": "processed",
                "amount": "{amount}",
                "currency": "EUR",
                "processed_on": "{eta}",
            },
        ),
        answers=(
            "Your refund of €{amount} for order {order} was processed on {eta}. Depending on your bank it "
            "can take 3-5 working days to show up.",
        ),
    ),
    Scenario(
        domain="shop",
        openings=(
            "Could you send the receipt for order {order} to {email}? I need it for my expenses.",
            "Hi, it's {name}. Please update the e-mail on my account to {email}.",
        ),
        answers=(
            "Done, {first}! You'll find it in your inbox at {email} within a few minutes.",
            "All set. Everything from now on goes to {email}.",
        ),
    ),
    PASSWORD_RESET,
    Scenario(
        domain="saas",
        openings=(
            "Hi, I need the February invoice for our {plan} plan. Our billing contact is {email}.",
            "Can you resend last month's invoice to {email}? Accounting can't find it.",
        ),
        tool=Tool(
            name="find_invoices",
            args={"email": "{email}", "period": "2026-02"},
            result={"invoices": [{"number": "{invoice}", "amount": "{amount}", "currency": "EUR", "status": "paid"}]},
        ),
        answers=(
            "I found invoice {invoice} (€{amount}, paid) and e-mailed a PDF copy to {email}. You can also "
            "download it any time under Settings → Billing.",
        ),
        follow_ups=(
            (
                "Can you add our VAT number to it?",
                "Yes: add the VAT number under Settings → Billing → Company details and I'll reissue {invoice} "
                "with it.",
            ),
        ),
    ),
    Scenario(
        domain="saas",
        openings=(
            "How do I set up SAML single sign-on with Okta for workspace {workspace}?",
            "We want SSO with Azure AD for {workspace}. Where do I start?",
        ),
        answers=(
            "Open Settings → Security → SAML in workspace {workspace}, copy the ACS URL and entity ID into a "
            "new app in your identity provider, then paste its metadata URL back into Acme Cloud.",
        ),
        follow_ups=(
            (
                "We're on the {plan} plan, is SSO included?",
                "SSO needs the Business plan. I can start a 14-day Business trial for {workspace} so you can "
                "test it first.",
            ),
            (
                "Will existing users have to sign up again?",
                "No, users are matched by e-mail address the first time they sign in through SSO.",
            ),
        ),
    ),
    Scenario(
        domain="saas",
        openings=(
            "Our integration keeps getting HTTP 429 from the API since this morning.",
            "Why am I getting 'rate limit exceeded' errors? We only make a few requests.",
        ),
        tool=Tool(
            name="get_api_usage",
            args={"workspace": "{workspace}", "window": "24h"},
            result={
                "workspace": "{workspace}",
                "limit_per_minute": 600,
                "peak_per_minute": 1280,
                "top_endpoint": "/v2/tasks",
            },
        ),
        answers=(
            "Workspace {workspace} peaked at 1,280 requests per minute against a limit of 600, mostly on "
            "/v2/tasks. Batching those calls, or backing off when you get a 429, will fix it.",
        ),
        follow_ups=(
            (
                "Can you raise the limit?",
                "Higher limits come with the Business plan (3,000 per minute). I've passed your request to our "
                "sales team, ticket {ticket}.",
            ),
        ),
    ),
    Scenario(
        domain="saas",
        openings=(
            "How can I export all our projects to CSV?",
            "We're moving to another tool, how do I get all our data out?",
        ),
        answers=(
            "Go to Settings → Data → Export, choose CSV or JSON and click Export. We e-mail you a download "
            "link when the archive is ready, usually within 10 minutes.",
        ),
        follow_ups=(
            (
                "Does the export include attachments?",
                "Yes, attachments are included as a separate ZIP file in the same archive.",
            ),
        ),
    ),
    Scenario(
        domain="saas",
        openings=(
            "We need {seats} more seats on our {plan} plan.",
            "How much would it cost to add {seats} users?",
        ),
        answers=(
            "On the {plan} plan each extra seat is billed pro rata for the rest of your billing period. I've "
            "added {seats} seats to {workspace}; the difference will be on your next invoice.",
        ),
    ),
    Scenario(
        domain="travel",
        openings=(
            "I need to move my flight to {destination} (booking {booking}) to {new_date}.",
            "Can I change booking {booking} so I fly on {new_date} instead?",
        ),
        tool=Tool(
            name="search_flights",
            args={"origin": "{origin}", "destination": "{destination_code}", "date": "{new_date}"},
            result={
                "flights": [{"flight": "{flight}", "departure": "{new_date}T09:40", "fare_difference_eur": "{amount}"}]
            },
        ),
        answers=(
            "There's a seat on {flight} from {origin} to {destination} on {new_date}, departing 09:40. The "
            "fare difference is €{amount}. Shall I rebook you?",
        ),
        follow_ups=(
            (
                "Yes please, go ahead.",
                "Done! Booking {booking} is now on {flight} on {new_date}. Your new e-ticket is on its way.",
            ),
            (
                "Is there anything cheaper in the afternoon?",
                "The afternoon flights that day are fully booked, so {flight} is the best option.",
            ),
        ),
    ),
    Scenario(
        domain="travel",
        openings=(
            "How much luggage can I bring on booking {booking}?",
            "Is a checked bag included in my ticket to {destination}?",
        ),
        answers=(
            "Your fare includes one cabin bag up to 8 kg and one checked bag up to 23 kg. Extra bags cost "
            "€45 each if you add them before check-in.",
        ),
        follow_ups=(
            (
                "Can I bring my bike?",
                "Yes, as special baggage for €60 each way. It needs to be packed in a bike box or bag.",
            ),
        ),
    ),
    Scenario(
        domain="travel",
        openings=(
            "I have to cancel my trip to {destination}, booking {booking}. Please send the confirmation to {email}.",
            "Please cancel booking {booking} and refund me. My e-mail is {email}.",
        ),
        answers=(
            "I've cancelled booking {booking}. You'll get €{amount} back (the fare minus a €30 cancellation "
            "fee) within 7 days, and the confirmation is on its way to {email}.",
        ),
    ),
    Scenario(
        domain="travel",
        openings=(
            "Can you recommend a hotel in {destination} close to the old town?",
            "Looking for a quiet hotel in {destination} for {nights} nights, any ideas?",
        ),
        answers=(
            "{hotel} is a 5-minute walk from the old town and very well reviewed. A double room is about "
            "€{amount} per night for your dates. Shall I book it?",
        ),
        follow_ups=(
            (
                "Does it have parking?",
                "Yes, there's a garage under the hotel for €18 per day.",
            ),
            (
                "Book it please, breakfast included.",
                "Booked! {hotel}, {nights} nights with breakfast. Confirmation number {booking}.",
            ),
        ),
    ),
    Scenario(
        domain="travel",
        openings=("What size does the passport photo for my visa to {destination} need to be?",),
        photo_openings=("Is this passport photo OK for my visa application to {destination}?",),
        answers=(
            "The photo must be 35×45 mm with a plain light background, taken within the last 6 months, "
            "without glasses and with a neutral expression.",
        ),
    ),
)

CLOSINGS = (
    ("Thanks, that's all!", "You're welcome, {first}! Have a great day."),
    ("Perfect, thank you so much.", "Happy to help! If anything else comes up, just write here."),
    ("ok thx", "Anytime! 👋"),
    ("Great, merci!", "Avec plaisir, {first}!"),
)

CUSTOMERS = (
    ("Amelia", "Hughes"),
    ("Lukas", "Schneider"),
    ("Sofia", "Rossi"),
    ("Mateo", "García"),
    ("Chloé", "Martin"),
    ("Noah", "Johnson"),
    ("Aisha", "Khan"),
    ("Kenji", "Tanaka"),
    ("Olivia", "Brown"),
    ("José", "Álvarez"),
    ("Emma", "de Vries"),
    ("Liam", "O'Connor"),
    ("Zoë", "Müller"),
    ("Priya", "Nair"),
    ("Mikael", "Lindqvist"),
    ("Fatima", "El Amrani"),
    ("Grace", "Wong"),
    ("Tomasz", "Nowak"),
    ("Isabella", "Costa"),
    ("Ethan", "Miller"),
)
PRODUCTS = (
    "Trailblazer rain jacket",
    "merino wool sweater",
    "Summit 45L backpack",
    "insulated water bottle",
    "down sleeping bag",
    "trail running shoes",
    "fleece hoodie",
    "two-person tent",
    "hiking socks (3-pack)",
)
CARRIERS = ("DHL", "UPS", "DPD", "GLS", "PostNL")
PLANS = ("Starter", "Team", "Business")
DESTINATIONS = (
    ("Lisbon", "LIS"),
    ("Kyoto", "KIX"),
    ("Reykjavík", "KEF"),
    ("Marrakesh", "RAK"),
    ("Kraków", "KRK"),
    ("Porto", "OPO"),
    ("Dubrovnik", "DBV"),
    ("Edinburgh", "EDI"),
)
ORIGINS = ("AMS", "FRA", "LHR", "CDG", "ZRH", "BER")
HOTELS = ("Hotel Aurora", "Casa do Rio", "The Old Mill Inn", "Pension Sonnenhof", "Riad Lila")
CHATFLOWS = ("support", "sales", "onboarding")


def _uuid(rng):
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def _ascii_name(name, separator=""):
    """A name fit for an e-mail address or a workspace: "José" -> "jose", "O'Connor" -> "oconnor",
    "de Vries" -> "devries" (or "de-vries" with separator="-")."""
    plain = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode().lower().replace("'", "")
    return plain.replace(" ", separator)


def _facts(rng, customer):
    """Everything a scenario template may mention, for one conversation."""
    first, last = customer
    destination, destination_code = rng.choice(DESTINATIONS)
    day = FIRST_DAY + timedelta(days=rng.randrange(60))
    return {
        "first": first,
        "name": f"{first} {last}",
        "email": f"{_ascii_name(first)}.{_ascii_name(last)}@example.com",
        "order": f"NW-{rng.randint(10000, 99999)}",
        "product": rng.choice(PRODUCTS),
        "size": rng.choice(("S", "M", "L", "XL")),
        "amount": f"{rng.randint(19, 349)}.{rng.choice(('00', '50', '95', '99'))}",
        "carrier": rng.choice(CARRIERS),
        "tracking": str(rng.randint(10**11, 10**12 - 1)),
        "eta": (day + timedelta(days=rng.randint(1, 5))).isoformat(),
        "ticket": f"#{rng.randint(20000, 99999)}",
        "plan": rng.choice(PLANS),
        "seats": str(rng.randint(2, 40)),
        "invoice": f"INV-2026-{rng.randint(1000, 9999)}",
        "workspace": f"{_ascii_name(last, '-')}-{rng.choice(('team', 'labs', 'studio', 'gmbh', 'inc'))}",
        "destination": destination,
        "destination_code": destination_code,
        "origin": rng.choice(ORIGINS),
        "flight": f"{rng.choice(('TP', 'KL', 'LH', 'BA', 'FR'))}{rng.randint(100, 1999)}",
        "new_date": (day + timedelta(days=rng.randint(7, 30))).isoformat(),
        "booking": "".join(rng.choice("ABCDEFGHJKLMNPQRSTUVWXYZ23456789") for _ in range(6)),
        "hotel": rng.choice(HOTELS),
        "nights": str(rng.randint(2, 6)),
        "photo": f"https://uploads.example.com/support/{rng.getrandbits(64):016x}.jpg",
    }


def _fill(template, facts):
    """A template (text, or a JSON-like structure of them) with the facts filled in."""
    if isinstance(template, str):
        return template.format_map(facts)
    if isinstance(template, dict):
        return {key: _fill(value, facts) for key, value in template.items()}
    if isinstance(template, list):
        return [_fill(item, facts) for item in template]
    return template


def build_conversation(rng, scenario, facts, *, system_prompt, use_tool, with_photo):
    """One support conversation, in chronological order."""
    turns = [Turn("system", SYSTEM_PROMPTS[scenario.domain])] if system_prompt else []
    if with_photo:
        turns.append(Turn("human", _fill(rng.choice(scenario.photo_openings), facts), image_url=facts["photo"]))
    else:
        turns.append(Turn("human", _fill(rng.choice(scenario.openings), facts)))
    if use_tool:
        call = Call(f"call_{rng.getrandbits(96):024x}", scenario.tool.name, _fill(scenario.tool.args, facts))
        turns.append(Turn("ai", "", call=call, id=_uuid(rng)))
        turns.append(Turn("tool", json.dumps(_fill(scenario.tool.result, facts)), call=call))
    turns.append(Turn("ai", _fill(rng.choice(scenario.answers), facts), id=_uuid(rng)))
    # Follow-ups keep their order (the second often builds on the first).
    follow_ups = [pair for pair in scenario.follow_ups if rng.random() < 0.6]
    if rng.random() < 0.6:
        follow_ups.append(rng.choice(CLOSINGS))
    for question, answer in follow_ups:
        turns.append(Turn("human", _fill(question, facts)))
        turns.append(Turn("ai", _fill(answer, facts), id=_uuid(rng)))
    return turns


# --- The writers' formats ------------------------------------------------------


def _openai_tool_calls(turn):
    """The OpenAI form of an ai turn's call, which LangChain and LlamaIndex keep in additional_kwargs."""
    if turn.role != "ai" or not turn.call:
        return {}
    call = turn.call
    return {
        "tool_calls": [
            {"id": call.id, "type": "function", "function": {"name": call.name, "arguments": json.dumps(call.args)}}
        ]
    }


def _langchain_tool_call(call):
    return {"name": call.name, "args": call.args, "id": call.id, "type": "tool_call"}


def _langchain_content(turn):
    if not turn.image_url:
        return turn.text
    return [{"type": "text", "text": turn.text}, {"type": "image_url", "image_url": {"url": turn.image_url}}]


def _token_usage(turn):
    # Plausible numbers, derived from the text so that they need no randomness.
    output_tokens = len(turn.text) // 4 + (18 if turn.call else 1)
    return {"input_tokens": 180 + 3 * output_tokens, "output_tokens": output_tokens}


def langchain_python_message(turn):
    """LangChain Python `message_to_dict`: {"type", "data": the message's pydantic dump}."""
    data = {
        "content": _langchain_content(turn),
        "additional_kwargs": {},
        "response_metadata": {},
        "type": turn.role,
        "name": None,
        "id": None,
    }
    if turn.role == "human":
        data["example"] = False
    elif turn.role == "ai":
        usage = _token_usage(turn)
        data.update(
            additional_kwargs={"refusal": None, **_openai_tool_calls(turn)},
            response_metadata={
                "token_usage": {
                    "completion_tokens": usage["output_tokens"],
                    "prompt_tokens": usage["input_tokens"],
                    "total_tokens": usage["input_tokens"] + usage["output_tokens"],
                },
                "model_name": MODEL,
                "system_fingerprint": "fp_0ba0d124f1",
                "finish_reason": "tool_calls" if turn.call else "stop",
                "logprobs": None,
            },
            id=f"run-{turn.id}-0",
            example=False,
            tool_calls=[_langchain_tool_call(turn.call)] if turn.call else [],
            invalid_tool_calls=[],
            usage_metadata={**usage, "total_tokens": usage["input_tokens"] + usage["output_tokens"]},
        )
    elif turn.role == "tool":
        data.update(name=turn.call.name, tool_call_id=turn.call.id, artifact=None, status="success")
    return {"type": turn.role, "data": data}


def langchain_js_message(turn):
    """LangChain JS `toDict` (Flowise, UpstashRedisChatMessageHistory): fields left undefined are absent."""
    data = {"content": _langchain_content(turn)}
    if turn.role == "ai":
        data.update(tool_calls=[_langchain_tool_call(turn.call)] if turn.call else [], invalid_tool_calls=[])
    if turn.role == "tool":
        data.update(tool_call_id=turn.call.id, name=turn.call.name)
    data.update(additional_kwargs=_openai_tool_calls(turn), response_metadata={})
    return {"type": turn.role, "data": data}


LLAMAINDEX_ROLES = {"human": "user", "ai": "assistant"}


def _llamaindex_additional_kwargs(turn):
    if turn.role == "tool":
        return {"tool_call_id": turn.call.id, "name": turn.call.name}
    return _openai_tool_calls(turn)


def llamaindex_content_message(turn):
    """Older LlamaIndex `ChatMessage.dict()`: text in `content` (null when an assistant only calls a tool)."""
    return {
        "role": LLAMAINDEX_ROLES.get(turn.role, turn.role),
        "content": turn.text or None,
        "additional_kwargs": _llamaindex_additional_kwargs(turn),
    }


def llamaindex_blocks_message(turn):
    """Newer LlamaIndex `ChatMessage.dict()`: content as a list of typed blocks."""
    blocks = [{"block_type": "text", "text": turn.text}] if turn.text else []
    if turn.image_url:
        image = {"image": None, "path": None, "url": turn.image_url, "image_mimetype": "image/jpeg", "detail": None}
        blocks.append({"block_type": "image", **image})
    return {
        "role": LLAMAINDEX_ROLES.get(turn.role, turn.role),
        "additional_kwargs": _llamaindex_additional_kwargs(turn),
        "blocks": blocks,
    }


@dataclass(frozen=True)
class Writer:
    name: str  # as counted in seed_demo's result
    push: str  # LPUSH: newest first; RPUSH: oldest first
    to_message: Callable[[Turn], dict]
    ensure_ascii: bool  # Python's json.dumps escapes non-ASCII by default, JSON.stringify does not
    keeps_system_prompt: bool  # Flowise's memory node stores only the human and ai turns
    keeps_images: bool  # older LlamaIndex messages are text only


FLOWISE = Writer(
    name="flowise",
    push="LPUSH",
    to_message=langchain_js_message,
    ensure_ascii=False,
    keeps_system_prompt=False,
    keeps_images=True,
)
LANGCHAIN_PYTHON = Writer(
    name="langchain_python",
    push="LPUSH",
    to_message=langchain_python_message,
    ensure_ascii=True,
    keeps_system_prompt=True,
    keeps_images=True,
)
LLAMAINDEX_CONTENT = Writer(
    name="llamaindex",
    push="RPUSH",
    to_message=llamaindex_content_message,
    ensure_ascii=True,
    keeps_system_prompt=True,
    keeps_images=False,
)
LLAMAINDEX_BLOCKS = dataclasses.replace(LLAMAINDEX_CONTENT, to_message=llamaindex_blocks_message, keeps_images=True)
WRITERS = (FLOWISE, LANGCHAIN_PYTHON, LLAMAINDEX_CONTENT, LLAMAINDEX_BLOCKS)
WRITER_WEIGHTS = (35, 35, 15, 15)


def session_key(writer, rng, index):
    if writer is FLOWISE:
        # Flowise uses the chat id (a uuid) unless the chatflow sets its own session id.
        return f"flowise-{rng.choice(CHATFLOWS)}-{rng.getrandbits(32):08x}" if index % 5 == 0 else _uuid(rng)
    if writer is LANGCHAIN_PYTHON:
        return f"message_store:{_uuid(rng)}"
    return f"llamaindex:chat:user-{4000 + index}"


def to_elements(writer, turns):
    """The session's list elements, chronological, as this writer stores them."""
    kept = [turn for turn in turns if writer.keeps_system_prompt or turn.role != "system"]
    return [json.dumps(writer.to_message(turn), ensure_ascii=writer.ensure_ascii) for turn in kept]


# --- The sessions and keys seed_demo writes ------------------------------------


@dataclass
class Session:
    key: str
    writer: Writer
    elements: list[str]  # chronological
    ttl: int | None = None
    has_tool_calls: bool = False
    has_images: bool = False

    def commands(self):
        """DEL (so that seeding twice gives the same store), the pushes, and EXPIRE when it has a TTL."""
        pushes = [
            [self.writer.push, self.key, *self.elements[start : start + ELEMENTS_PER_PUSH]]
            for start in range(0, len(self.elements), ELEMENTS_PER_PUSH)
        ]
        return [["DEL", self.key], *pushes, *([["EXPIRE", self.key, self.ttl]] if self.ttl else [])]


def generated_session(rng, index):
    """One ordinary session: a random writer, scenario and customer."""
    writer = rng.choices(WRITERS, WRITER_WEIGHTS)[0]
    if index % 40 == 7:
        # A few sessions of one customer that mention her e-mail address: what an erasure search finds.
        customer, scenario = ERASURE_CUSTOMER, rng.choice([s for s in SCENARIOS if s.mentions_email])
    else:
        customer, scenario = rng.choice(CUSTOMERS), rng.choice(SCENARIOS)
    use_tool = scenario.tool is not None and rng.random() < 0.5
    with_photo = bool(scenario.photo_openings) and writer.keeps_images and rng.random() < 0.5
    turns = build_conversation(
        rng, scenario, _facts(rng, customer), system_prompt=rng.random() < 0.3, use_tool=use_tool, with_photo=with_photo
    )
    # Apps with a session timeout are the minority: a TTL of hours to days on one session in ten.
    ttl = rng.randint(2 * 3600, 5 * 86400) if index % 10 == 0 else None
    return Session(session_key(writer, rng, index), writer, to_elements(writer, turns), ttl, use_tool, with_photo)


def _plain_conversation(rng, scenario, use_tool=False):
    """A conversation with a random customer, no system prompt and no photo."""
    facts = _facts(rng, rng.choice(CUSTOMERS))
    return build_conversation(rng, scenario, facts, system_prompt=False, use_tool=use_tool, with_photo=False)


def long_session(rng, length):
    """A LangChain Python session of `length` messages: many conversations one after the other."""
    elements = []
    while len(elements) < length:
        scenario = rng.choice(SCENARIOS)
        turns = _plain_conversation(rng, scenario, use_tool=scenario.tool is not None)
        elements += to_elements(LANGCHAIN_PYTHON, turns)
    return Session(LONG_SESSION_KEY, LANGCHAIN_PYTHON, elements[:length], has_tool_calls=True)


def malformed_session(rng):
    """A LangChain Python session with an invalid JSON element and one of unknown shape among valid ones."""
    elements = to_elements(LANGCHAIN_PYTHON, _plain_conversation(rng, ORDER_STATUS))
    elements.insert(1, '{"type": "ai", "data": {"content": "Let me check that for y')  # cut off mid-write
    elements.insert(3, json.dumps({"sender": "bot", "msg": "Session restored from backup", "ts": 1767225600}))
    return Session(MALFORMED_SESSION_KEY, LANGCHAIN_PYTHON, elements)


# The third malformed element, pushed last (the newest). EVAL, because the REST
# API carries only JSON strings: bytes that are not UTF-8 must be made in the store.
NON_UTF8_SCRIPT = "return redis.call('LPUSH', KEYS[1], string.char(255, 254) .. ARGV[1])"
NON_UTF8_REST = " exported from the old helpdesk in Latin-1"


def awkward_key_session(rng):
    return Session(AWKWARD_SESSION_KEY, FLOWISE, to_elements(FLOWISE, _plain_conversation(rng, PASSWORD_RESET)))


# Keys that real stores hold next to the sessions; none of them is a list.
NON_SESSION_COMMANDS = (
    ["SET", "ratelimit:user:42", "17", "EX", 3600],
    ["SET", "cache:embedding:abc", json.dumps([0.0123, -0.0456, 0.0789, 0.1011, -0.1213])],
    ["HSET", "config:chatflow:support", "model", MODEL, "temperature", "0.2", "memory", "upstash", "ttl", "86400"],
    ["SADD", "flowise:chatflows", *CHATFLOWS],
)


def summary_commands(rng, session, message_count, namespace):
    """Our summary hash (see summaries.py) of a session's first `message_count` messages, with the session's TTL."""
    key = f"{namespace}{session.key}"
    fields = {
        "text": _extractive_summary(session.elements[:message_count]),
        "method": "extractive",
        "message_count": message_count,
        # Relative to now (unlike the conversations): the dashboard shows a recent summary.
        "generated_at": (datetime.now(UTC) - timedelta(minutes=rng.randint(5, 600))).isoformat(timespec="seconds"),
        "duration_ms": rng.randint(3, 40),
    }
    commands = [["DEL", key], ["HSET", key, *[item for pair in fields.items() for item in pair]]]
    return commands + ([["EXPIRE", key, session.ttl]] if session.ttl else [])


def _extractive_summary(elements):
    """The customer's first message and the assistant's first answer to it."""
    messages = [parse_element(element) for element in elements]
    question = next((message.text for message in messages if message.role == "human"), "")
    answer = next((message.text for message in messages if message.role == "ai" and message.text), "")
    return f"The customer wrote: {question} The assistant answered: {answer}"


def store_is_empty(client):
    return client.call("DBSIZE") == 0


def send_in_batches(client, commands):
    """Run commands in as few pipelines as the request limits allow."""
    batch, batch_bytes = [], 0
    for command in commands:
        size = sum(len(str(argument)) for argument in command)
        if batch and (len(batch) >= PIPELINE_COMMANDS or batch_bytes + size > PIPELINE_BYTES):
            client.pipeline(batch)
            batch, batch_bytes = [], 0
        batch.append(command)
        batch_bytes += size
    client.pipeline(batch)


def seed_demo(
    client, *, sessions=200, long_session_messages=5000, rng_seed=7, summary_namespace="memoryadmin:summary:"
) -> dict:
    """Write the demo data (`sessions` ordinary sessions plus the special ones); returns counts of what was written."""
    rng = random.Random(rng_seed)
    generated = [generated_session(rng, index) for index in range(sessions)]
    long = long_session(rng, long_session_messages)
    malformed = malformed_session(rng)
    awkward = awkward_key_session(rng)
    everything = [*generated, long, malformed, awkward]

    commands = [command for session in everything for command in session.commands()]
    commands.append(["EVAL", NON_UTF8_SCRIPT, 1, malformed.key, NON_UTF8_REST])
    commands += NON_SESSION_COMMANDS
    # A fresh summary on a session with a TTL (the first one has one), and a stale one,
    # written before the long session's latest messages came in.
    summarised = [(session, len(session.elements)) for session in generated[:1]]
    summarised.append((long, max(0, len(long.elements) - 10)))
    for session, message_count in summarised:
        commands += summary_commands(rng, session, message_count, summary_namespace)
    send_in_batches(client, commands)

    return {
        "sessions": len(everything),
        "messages": sum(len(session.elements) for session in everything) + 1,  # + the EVALed element
        **{
            name: sum(session.writer.name == name for session in everything)
            for name in ("flowise", "langchain_python", "llamaindex")
        },
        "with_ttl": sum(session.ttl is not None for session in everything),
        "with_tool_calls": sum(session.has_tool_calls for session in everything),
        "with_images": sum(session.has_images for session in everything),
        "long_session_messages": len(long.elements),
        "malformed_elements": 3,
        "non_session_keys": len(NON_SESSION_COMMANDS),
        "summaries": len(summarised),
    }
