"""tmpl_cases.py — deterministic message/tool combinations for the template
parity test: system/user/assistant/tool turns, multi-turn, tool definitions
with nested JSON schemas, assistant tool_calls (arguments as dicts, sometimes
as strings), tool results, reasoning_content, add_generation_prompt and
enable_thinking on/off, unicode, whitespace edges, empty content, and some
conversations a template must refuse (raise_exception)."""
import copy
import random

TEXTS = [
    "Hello!",
    "What's the weather in Paris?",
    "  leading and trailing spaces  ",
    "\n\nnewlines around\n\n",
    "tabs\tinside\tand\ttrailing\t",
    "日本語のテキストです。中文也可以。",
    "مرحبا بالعالم",
    "नमस्ते दुनिया",
    "emoji 👩‍👩‍👧‍👦 family and 🇫🇷 flag",
    "combining: e\u0301 a\u0308 \u0915\u094d\u0937",
    "\u3000ideographic space and nbsp\u00a0",
    "quotes ' and \" and backslash \\ and {braces} and {{ jinja }}",
    "<think>not really thinking</think> text",
    "looks like a tag: <tool_call>{\"name\": \"x\"}</tool_call>",
    "<|im_start|>user\nspecial tokens in text<|im_end|>",
    "code:\n```python\ndef f(x):\n    return x ** 2\n```\n",
    "",
    "a" * 300,
    "line1\r\nline2\rline3",
    "zero\u200bwidth\u200djoiner",
    "control \x07 bell \x1b escape",
    "1234567890" * 5,
]

REASONING = [
    "Let me think about this.",
    "\nStep 1: parse.\nStep 2: answer.\n",
    "推理过程：先看问题。",
    "",
    "  spaced reasoning  ",
]

TOOLS = [
    {"type": "function", "function": {
        "name": "get_weather",
        "description": "Get the current weather for a city.",
        "parameters": {"type": "object", "properties": {
            "city": {"type": "string", "description": "City name, e.g. Paris"},
            "unit": {"type": "string", "enum": ["celsius", "fahrenheit"], "description": "Temperature unit"}},
            "required": ["city"]}}},
    {"type": "function", "function": {
        "name": "search_files",
        "description": "Search files by pattern.  ",
        "parameters": {"type": "object", "properties": {
            "pattern": {"type": "string"},
            "max_results": {"type": "integer", "default": 10, "description": "Upper bound"},
            "include_hidden": {"type": "boolean", "default": False},
            "paths": {"type": "array", "items": {"type": "string"}, "description": "Roots"}},
            "required": ["pattern"]}}},
    {"type": "function", "function": {
        "name": "create_event",
        "description": "Create a calendar event — with ünïcödé and 日本語.",
        "parameters": {"type": "object", "properties": {
            "title": {"type": "string"},
            "attendees": {"type": "array", "items": {"type": "object", "properties": {
                "email": {"type": "string"}, "optional": {"type": "boolean"}}, "required": ["email"]}},
            "when": {"type": "object", "properties": {
                "start": {"type": "string", "format": "date-time"},
                "duration_minutes": {"type": "number", "minimum": 0.5}},
                "required": ["start"]},
            "priority": {"oneOf": [{"type": "integer"}, {"type": "string", "description": "named"}]},
            "tags": {"type": ["string", "null"], "nullable": True}},
            "required": ["title", "when"]}}},
    {"type": "function", "function": {
        "name": "run_code",
        "description": "Run a snippet.",
        "parameters": {"type": "object", "properties": {
            "code": {"type": "string"},
            "timeout": {"type": "number", "default": 2.5},
            "env": {"type": "object", "additionalProperties": {"type": "string"}},
            "matrix": {"type": "array", "items": {"type": "array", "items": {"type": "number"}}}},
            "required": ["code"]}}},
    {"type": "function", "function": {
        "name": "no_params",
        "description": "A tool without parameters.",
        "parameters": {"type": "object", "properties": {}}}},
]

ARGS = {
    "get_weather": [{"city": "Paris"}, {"city": "東京", "unit": "celsius"}, {"city": "São Paulo", "unit": "fahrenheit"}],
    "search_files": [{"pattern": "*.c", "max_results": 5}, {"pattern": "a\"b\\c", "include_hidden": True, "paths": ["/tmp", "./src"]}],
    "create_event": [{"title": "Standup", "when": {"start": "2025-01-02T09:00:00Z", "duration_minutes": 15.0},
                      "attendees": [{"email": "a@b.c"}, {"email": "x@y.z", "optional": False}]},
                     {"title": "Fête 🎉", "when": {"start": "soon", "duration_minutes": 1e-7}, "priority": None, "tags": None}],
    "run_code": [{"code": "print('hi')\nprint(1/3)", "timeout": 0.1}, {"code": "x", "env": {"A": "1", "B": ""},
                 "matrix": [[1, 2.5], [-0.0, 1e22], [3.14159, 100000000000000000.0]]}],
    "no_params": [{}],
}

RESULTS = ["{\"temperature\": 21, \"unit\": \"celsius\"}", "sunny", "", "结果：没有找到", "line1\nline2",
           "[1, 2, 3]", "  padded result  "]


def _tool_call(rng, name, idx, as_string=False, style="function"):
    import json
    args = copy.deepcopy(rng.choice(ARGS[name]))
    if as_string:
        args = json.dumps(args)
    if style == "flat":
        return {"name": name, "arguments": args}
    return {"id": "call_%d" % idx, "type": "function", "function": {"name": name, "arguments": args}}


def conversation(rng, family):
    """One random conversation shaped for `family` (mostly valid for it)."""
    msgs = []
    sys_kind = rng.random()
    if sys_kind < 0.45:
        msgs.append({"role": "system", "content": rng.choice(TEXTS[:12])})
    elif sys_kind < 0.55 and family == "gemma":
        msgs.append({"role": "system", "content": [{"type": "text", "text": rng.choice(TEXTS)}]})
    tools = None
    if rng.random() < 0.6:
        k = rng.randint(1, 4)
        tools = copy.deepcopy(rng.sample(TOOLS, k))
    turns = rng.randint(1, 4)
    call_idx = 0
    for t in range(turns):
        u = rng.choice(TEXTS)
        if family == "gemma" and rng.random() < 0.15:
            msgs.append({"role": "user", "content": [{"type": "text", "text": u}, {"type": "image"},
                                                     {"type": "text", "text": rng.choice(TEXTS)}]})
        else:
            msgs.append({"role": "user", "content": u})
        if t == turns - 1 and rng.random() < 0.5:
            break
        # an assistant turn: plain, with reasoning, or with tool calls (+ results)
        r = rng.random()
        if tools and r < 0.45 and family != "gemma":
            n_calls = 1 if family in ("llama", "gptoss") else rng.randint(1, 3)
            calls = []
            for _ in range(n_calls):
                name = rng.choice(tools)["function"]["name"]
                calls.append(_tool_call(rng, name, call_idx, as_string=(family in ("qwen3",) and rng.random() < 0.2) or
                                        (family == "deepseek" and rng.random() < 0.4)))
                call_idx += 1
            m = {"role": "assistant", "tool_calls": calls}
            cr = rng.random()
            if family == "gptoss":
                if cr < 0.3:
                    m["content"] = rng.choice(TEXTS[:6])
                elif cr < 0.6:
                    m["reasoning_content"] = rng.choice(REASONING[:3])
                else:
                    m["content"] = ""
            elif cr < 0.4:
                m["content"] = rng.choice(TEXTS)
            elif cr < 0.7:
                m["content"] = ""
            else:
                m["content"] = None if family not in ("qwen3",) else ""
            if family in ("qwen3", "deepseek") and rng.random() < 0.4:
                m["reasoning_content"] = rng.choice(REASONING)
            msgs.append(m)
            for c in calls:
                msgs.append({"role": "tool", "tool_call_id": c["id"], "content": rng.choice(RESULTS)})
            if rng.random() < 0.6:
                msgs.append({"role": "assistant", "content": rng.choice(TEXTS)})
            else:
                # next user turn must follow a tool-less assistant for some templates
                msgs.append({"role": "assistant", "content": "ok"})
        else:
            m = {"role": "assistant", "content": rng.choice(TEXTS)}
            if rng.random() < 0.35 and family in ("qwen3", "gptoss", "qwen3coder"):
                m["reasoning_content"] = rng.choice(REASONING)
            if family == "qwen3" and rng.random() < 0.15:
                m["content"] = "<think>\ninline reasoning\n</think>\n\n" + rng.choice(TEXTS)
            msgs.append(m)
    return msgs, tools


def broken_conversation(rng, family):
    """Conversations some templates must refuse or handle oddly."""
    kind = rng.randint(0, 5)
    if kind == 0:  # two user turns in a row (gemma raises)
        return [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}], None
    if kind == 1:  # a tool message with no prior tool call (gpt-oss raises)
        return [{"role": "user", "content": "a"}, {"role": "tool", "content": "r"}], None
    if kind == 2:  # two parallel calls (llama raises)
        calls = [_tool_call(rng, "get_weather", 0), _tool_call(rng, "get_weather", 1)]
        return [{"role": "user", "content": "a"}, {"role": "assistant", "content": "", "tool_calls": calls}], copy.deepcopy(TOOLS[:1])
    if kind == 3:  # None content for a user (qwen3 raises on string ops)
        return [{"role": "user", "content": None}], None
    if kind == 4:  # content as parts for a template that expects strings
        return [{"role": "user", "content": [{"type": "text", "text": "hi"}]}], None
    return [], None  # no messages at all (index errors)


FAMILY = {
    "Qwen3-0.6B": "qwen3", "Qwen3-Coder": "qwen3coder", "Llama-3.1-8B-Instruct": "llama",
    "Llama-3.2-3B-Instruct": "llama", "Llama-3.3-70B-Instruct": "llama", "gpt-oss-120b": "gptoss", "gemma-3": "gemma",
    "DeepSeek-V3.1": "deepseek", "DeepSeek-R1-Distill-Qwen-32B": "deepseek", "DeepSeek-R1-Distill-Llama-8B": "deepseek",
    "DeepSeek-V3.2": "deepseek",
}


def cases(name, n=240, seed=1234):
    """n (messages, tools, kwargs) triples for the template `name`."""
    family = FAMILY.get(name, "generic")
    rng = random.Random("%s/%d" % (name, seed))
    out = []
    for i in range(n):
        if i % 12 == 11:
            msgs, tools = broken_conversation(rng, family)
        else:
            msgs, tools = conversation(rng, family)
        kw = {"add_generation_prompt": rng.random() < 0.6, "bos_token": "<bos>" if family == "gemma" else "<|begin_of_text|>",
              "eos_token": "<eos>"}
        e = rng.random()
        if e < 0.35:
            kw["enable_thinking"] = False
        elif e < 0.7:
            kw["enable_thinking"] = True
        if family == "gptoss":
            if rng.random() < 0.3:
                kw["reasoning_effort"] = rng.choice(["low", "high"])
            if rng.random() < 0.2:
                kw["model_identity"] = "You are a test model."
            if rng.random() < 0.2:
                kw["builtin_tools"] = rng.choice([["browser"], ["python"], ["browser", "python"]])
        if family == "llama":
            if rng.random() < 0.2:
                kw["tools_in_user_message"] = False
            if rng.random() < 0.15:
                kw["date_string"] = "01 Jan 2025"
            if rng.random() < 0.1:
                kw["builtin_tools"] = ["brave_search", "wolfram_alpha"]
        out.append((msgs, tools, kw))
    return out
