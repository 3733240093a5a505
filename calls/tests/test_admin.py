from __future__ import annotations

import re

import pytest
from django.contrib.auth.models import Permission, User
from django.urls import reverse

from calls.demo import demo_call_create
from calls.models import Call, Turn

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff_client(client):
    """A staff member who may view calls and edit personas, but is not a superuser."""
    user = User.objects.create_user("staff", password="pw-for-tests", is_staff=True)
    codenames = ["view_call", "view_persona", "change_persona", "view_phonenumber", "change_phonenumber"]
    user.user_permissions.set(Permission.objects.filter(codename__in=codenames))
    client.force_login(user)
    return client


@pytest.fixture
def demo_call() -> Call:
    return demo_call_create()[0]


def test_the_call_page_shows_the_whole_transcript_in_order(staff_client, demo_call):
    response = staff_client.get(reverse("admin:calls_call_change", args=[demo_call.pk]))
    assert response.status_code == 200
    html = response.content.decode()
    positions = [html.index(f'data-sequence="{turn.sequence}"') for turn in demo_call.turns.in_order()]
    assert positions == sorted(positions) and len(positions) == 9
    # Texts appear in the order they were spoken.
    texts = list(demo_call.turns.in_order().values_list("text", flat=True))
    from django.utils.html import escape

    offsets = [html.index(escape(text)) for text in texts]
    assert offsets == sorted(offsets)


def test_the_unheard_remainder_of_an_interrupted_turn_is_struck_through(staff_client, demo_call):
    turn = demo_call.turns.get(interrupted=True)
    html = staff_client.get(reverse("admin:calls_call_change", args=[demo_call.pk])).content.decode()
    block = re.search(rf'data-sequence="{turn.sequence}">(.*?)</div>\s*</div>', html, re.S).group(1)
    heard = re.search(r'<span class="heard">(.*?)</span>', block, re.S).group(1)
    unheard = re.search(r'<del class="unheard"[^>]*>(.*?)</del>', block, re.S).group(1)
    assert heard == turn.text.replace("'", "&#x27;")
    assert unheard == turn.unheard_text.replace("'", "&#x27;")
    assert "interrupted" in block
    assert ".transcript .unheard" in html and "line-through" in html


def test_the_call_page_is_read_only(staff_client, demo_call):
    html = staff_client.get(reverse("admin:calls_call_change", args=[demo_call.pk])).content.decode()
    assert 'name="status"' not in html and 'type="submit" value="Save"' not in html


def test_the_call_list_shows_each_call_with_its_persona_and_turn_count(staff_client, demo_call):
    response = staff_client.get(reverse("admin:calls_call_changelist"))
    assert response.status_code == 200
    html = response.content.decode()
    assert demo_call.from_number in html and demo_call.persona.name in html
    assert '<td class="field-turn_count">9</td>' in html
    assert '<td class="field-duration">1:14</td>' in html


def test_the_call_list_costs_the_same_queries_for_one_call_or_thirty(
    staff_client, demo_call, default_persona, django_assert_max_num_queries
):
    with django_assert_max_num_queries(12) as one:
        staff_client.get(reverse("admin:calls_call_changelist"))
    for n in range(30):
        call = Call.objects.create(call_sid=f"CA{n:032d}", persona=default_persona, from_number="+1415555")
        Turn.objects.create(call=call, sequence=0, role=Turn.Role.USER, text="hello")
    with django_assert_max_num_queries(len(one.captured_queries)):
        response = staff_client.get(reverse("admin:calls_call_changelist"))
    assert response.content.decode().count('class="field-turn_count"') == 31


def test_calls_are_found_by_words_said_in_them(staff_client, demo_call, default_persona):
    other = Call.objects.create(call_sid="CA" + "9" * 32, persona=default_persona)
    Turn.objects.create(call=other, sequence=0, role=Turn.Role.USER, text="My router is blinking red")
    html = staff_client.get(reverse("admin:calls_call_changelist"), {"q": "Saturday"}).content.decode()
    assert demo_call.call_sid in html or demo_call.from_number in html
    assert "9" * 32 not in html
    html = staff_client.get(reverse("admin:calls_call_changelist"), {"q": "router"}).content.decode()
    assert "1 call" in html and demo_call.from_number not in html


def test_calls_filter_by_persona_and_status(staff_client, demo_call, other_persona):
    Call.objects.create(call_sid="CA" + "8" * 32, persona=other_persona, from_number="+15550001111")
    url = reverse("admin:calls_call_changelist")
    html = staff_client.get(url, {"persona__id__exact": other_persona.pk}).content.decode()
    assert "+15550001111" in html and demo_call.from_number not in html
    html = staff_client.get(url, {"status__exact": "completed"}).content.decode()
    assert demo_call.from_number in html and "+15550001111" not in html


@pytest.mark.parametrize(
    "url",
    [
        "/admin/",
        "/admin/calls/call/",
        "/admin/agents/persona/",
        "/admin/agents/phonenumber/",
    ],
)
def test_anonymous_visitors_are_sent_to_the_login_page(client, url):
    response = client.get(url)
    assert response.status_code == 302
    assert response["Location"].startswith("/admin/login/")


def test_a_demo_call_page_for_an_anonymous_visitor_redirects(client, demo_call):
    response = client.get(reverse("admin:calls_call_change", args=[demo_call.pk]))
    assert response.status_code == 302 and "/admin/login/" in response["Location"]


def tool_calls_of(html: str, sequence: int) -> list[tuple[str, str, str]]:
    """(classes, call, outcome) of each tool call shown under one turn."""
    start = html.index(f'data-sequence="{sequence}"')
    end = html.find('data-sequence="', start + 1)
    block = html[start : end if end > 0 else len(html)]
    return re.findall(
        r'<li class="tool-call ([\w -]+)"[^>]*><span class="call">(.*?)</span> — '
        r'<span class="outcome">(.*?)</span></li>',
        block,
        re.S,
    )


def test_the_demo_calls_last_agent_turn_shows_its_executed_end_call(staff_client, demo_call):
    last = demo_call.turns.in_order().last()
    assert last.role == Turn.Role.ASSISTANT
    html = staff_client.get(reverse("admin:calls_call_change", args=[demo_call.pk])).content.decode()
    assert tool_calls_of(html, last.sequence) == [
        ("executed", "end_call(reason=&quot;caller said goodbye&quot;)", "executed")
    ]
    assert html.count('class="tool-call ') == 1  # only that turn has one


def test_tool_calls_that_did_not_run_are_shown_apart_with_their_reason(staff_client, default_persona):
    call = Call.objects.create(call_sid="CA" + "6" * 32, persona=default_persona)
    Turn.objects.create(
        call=call, sequence=0, role=Turn.Role.USER, text="Hablo español. And a human, please."
    )
    Turn.objects.create(
        call=call,
        sequence=1,
        role=Turn.Role.ASSISTANT,
        text="Claro. Le paso con",
        generated_text="Claro. Le paso con una persona.",
        interrupted=True,
        tool_calls=[
            {
                "name": "switch_language",
                "arguments": {"code": "es-MX"},
                "result": "switched to es-MX",
                "executed": True,
            },
            {
                "name": "transfer_to_human",
                "arguments": {"reason": "asked for a person", "summary": "Wants <help> & more"},
                "result": "not executed: caller interrupted",
                "executed": False,
            },
            {"name": "end_call", "arguments": {}, "result": "", "executed": False},
        ],
    )
    html = staff_client.get(reverse("admin:calls_call_change", args=[call.pk])).content.decode()
    assert tool_calls_of(html, 1) == [
        ("executed", "switch_language(code=&quot;es-MX&quot;)", "executed"),
        (
            "not-executed",
            "transfer_to_human(reason=&quot;asked for a person&quot;, "
            "summary=&quot;Wants &lt;help&gt; &amp; more&quot;)",
            "not executed: caller interrupted",
        ),
        ("not-executed", "end_call()", "not executed"),
    ]
    assert 'title="switched to es-MX"' in html
    assert ".transcript .tool-call.not-executed" in html and "dashed" in html
    assert tool_calls_of(html, 0) == []


def test_http_tool_calls_show_their_status_time_and_result(staff_client, default_persona):
    call = Call.objects.create(call_sid="CA" + "5" * 32, persona=default_persona)
    Turn.objects.create(call=call, sequence=0, role=Turn.Role.USER, text="Where is A17? Book at 7.")
    records = [
        ("check_order", {"order": "A17"}, True, "ok", '{"status":"shipped"}', 84),
        ("check_order", {"order": "B2"}, True, "timeout", "the tool did not answer within 5 seconds", 5003),
        ("book_table", {"time": "7pm"}, False, "cancelled", "cancelled: the reply was cut short", 120),
    ]
    Turn.objects.create(
        call=call,
        sequence=1,
        role=Turn.Role.ASSISTANT,
        text="One moment, please. It shipped.",
        tool_calls=[
            {"name": n, "arguments": a, "executed": e, "status": s, "result": r, "duration_ms": d}
            for n, a, e, s, r, d in records
        ],
    )
    html = staff_client.get(reverse("admin:calls_call_change", args=[call.pk])).content.decode()
    assert tool_calls_of(html, 1) == [
        ("executed", "check_order(order=&quot;A17&quot;)", "ok in 84 ms"),
        ("not-executed", "check_order(order=&quot;B2&quot;)", "timeout in 5003 ms"),
        ("not-executed", "book_table(time=&quot;7pm&quot;)", "cancelled in 120 ms"),
    ]
    assert 'title="{&quot;status&quot;:&quot;shipped&quot;}"' in html
    assert 'title="the tool did not answer within 5 seconds"' in html  # an error's reason is shown too
