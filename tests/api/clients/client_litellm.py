"""litellm (OpenAI-compatible provider): completion, streaming, tools."""
import json
import litellm
from common import BASE, KEY, MODEL, check, done

litellm.ssl_verify = True  # the CA comes from SSL_CERT_FILE
KW = dict(model="openai/" + MODEL, api_base=BASE + "/v1", api_key=KEY)


def completion():
    r = litellm.completion(messages=[{"role": "user", "content": "hi [[script:hello]]"}], **KW)
    return r.choices[0].message.content.startswith("Hello"), r


def streaming():
    text = "".join(c.choices[0].delta.content or "" for c in litellm.completion(
        messages=[{"role": "user", "content": "hi [[script:hello]]"}], stream=True, **KW))
    return text.startswith("Hello"), text


def tools():
    tool = {"type": "function", "function": {"name": "get_weather", "parameters": {
        "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}
    r = litellm.completion(messages=[{"role": "user", "content": "weather [[script:call]]"}], tools=[tool], **KW)
    tc = r.choices[0].message.tool_calls
    return tc and tc[0].function.name == "get_weather" and json.loads(tc[0].function.arguments) == {"city": "Oslo"}, r


for name, fn in [("completion", completion), ("streaming", streaming), ("tools", tools)]:
    check("litellm", name, fn)
done()
