"""The official anthropic client: messages, streaming, a tool-use round trip, count_tokens."""
import anthropic
import httpx2 as httpx
from common import BASE, CERT, FINAL, KEY, MODEL, check, done

cl = anthropic.Anthropic(base_url=BASE, api_key=KEY, max_retries=0, http_client=httpx.Client(verify=CERT, timeout=60))
TOOL = {"name": "get_weather", "description": "weather", "input_schema": {
    "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}


def messages():
    r = cl.messages.create(model=MODEL, max_tokens=100, messages=[{"role": "user", "content": "hi [[script:hello]]"}])
    return r.content[0].type == "text" and r.content[0].text.startswith("Hello") and r.stop_reason == "end_turn", r


def streaming():
    with cl.messages.stream(model=MODEL, max_tokens=100, messages=[{"role": "user", "content": "hi [[script:hello]]"}]) as s:
        text = "".join(s.text_stream)
        final = s.get_final_message()
    return text.startswith("Hello") and final.content[-1].text == text and final.stop_reason == "end_turn", text


def tool_round_trip():
    msgs = [{"role": "user", "content": "weather in Oslo [[script:call]]"}]
    r = cl.messages.create(model=MODEL, max_tokens=200, tools=[TOOL], messages=msgs)
    tu = [b for b in r.content if b.type == "tool_use"]
    if r.stop_reason != "tool_use" or not tu or tu[0].input != {"city": "Oslo"}:
        return False, r
    msgs += [{"role": "assistant", "content": r.content},
             {"role": "user", "content": [{"type": "tool_result", "tool_use_id": tu[0].id, "content": "5C [[script:final]]"}]}]
    r2 = cl.messages.create(model=MODEL, max_tokens=200, tools=[TOOL], messages=msgs)
    return r2.content[-1].text.strip() == FINAL, r2


def count_tokens():
    r = cl.messages.count_tokens(model=MODEL, messages=[{"role": "user", "content": "hi [[script:hello]]"}])
    return r.input_tokens > 5, r


for name, fn in [("messages", messages), ("streaming", streaming), ("tool-use round trip", tool_round_trip),
                 ("count_tokens", count_tokens)]:
    check("anthropic", name, fn)
done()
