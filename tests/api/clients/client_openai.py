"""The official openai client: chat (whole, streamed), tools, tool_choice, .parse(), responses (whole, streamed)."""
import openai
from common import BASE, CERT, FINAL, KEY, MODEL, WEATHER_SCHEMA, check, done, is_weather, loads

mk = getattr(openai, "DefaultHttpx2Client", None) or openai.DefaultHttpxClient
cl = openai.OpenAI(base_url=BASE + "/v1", api_key=KEY, max_retries=0, http_client=mk(verify=CERT, timeout=60))
TOOL = {"type": "function", "function": {"name": "get_weather", "parameters": {
    "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}
WTOOL = {"type": "function", "function": {"name": "Weather", "parameters": WEATHER_SCHEMA}}


def chat():
    r = cl.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi [[script:hello]]"}])
    return r.choices[0].message.content.startswith("Hello") and r.choices[0].finish_reason == "stop", r


def chat_stream():
    text = "".join(c.choices[0].delta.content or "" for c in cl.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "hi [[script:hello]]"}], stream=True) if c.choices)
    return text.startswith("Hello"), text


def tools():
    r = cl.chat.completions.create(model=MODEL, tools=[TOOL], messages=[{"role": "user", "content": "weather [[script:call]]"}])
    tc = r.choices[0].message.tool_calls
    return tc and tc[0].function.name == "get_weather" and loads(tc[0].function.arguments) == {"city": "Oslo"}, r


def tool_choice():
    r = cl.chat.completions.create(model=MODEL, tools=[TOOL, WTOOL], tool_choice={"type": "function", "function": {"name": "Weather"}},
                                   messages=[{"role": "user", "content": "weather [[script:forced_weather]]"}])
    tc = r.choices[0].message.tool_calls
    return tc and tc[0].function.name == "Weather" and is_weather(loads(tc[0].function.arguments)), r


def parse():
    from pydantic import BaseModel

    class Weather(BaseModel):
        city: str
        temp_c: int
    r = cl.chat.completions.parse(model=MODEL, response_format=Weather,
                                  messages=[{"role": "user", "content": "weather [[script:json_weather]]"}])
    return is_weather(r.choices[0].message.parsed), r


def responses():
    r = cl.responses.create(model=MODEL, input="hi [[script:hello]]")
    return r.status == "completed" and r.output_text.startswith("Hello"), r


def responses_stream():
    with cl.responses.stream(model=MODEL, input="hi [[script:hello]]") as s:
        deltas = "".join(e.delta for e in s if e.type == "response.output_text.delta")
        final = s.get_final_response()
    return deltas.startswith("Hello") and final.output_text == deltas, deltas


for name, fn in [("chat", chat), ("chat streaming", chat_stream), ("tools", tools), ("tool_choice (named)", tool_choice),
                 (".parse() structured output", parse), ("responses.create", responses),
                 ("responses streaming", responses_stream)]:
    check("openai", name, fn)
done()
