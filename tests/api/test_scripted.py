#!/usr/bin/env python3
"""test_scripted.py — the agent APIs end to end over HTTPS (nginx + sparkd) with
the real templates and tokenizers of Qwen3, Qwen3-Coder and GPT-OSS (and DeepSeek
V3.1's, R1-Distill's and V3.2's templates over Qwen3's tokenizer, with DeepSeek's tool-call
tokens spelled as text; named and "required" forced calls there too, and on Qwen3-Coder a
forced call whose scripted XML parameters break the tool's schema, repaired by the grammar
mask and checked with jsonschema; on Qwen3-Coder and V3.2 a named call whose scripted nested
array breaks its sub-schema, valid for jsonschema once masked and not under "auto"; on Qwen3-Coder, GPT-OSS, DeepSeek V3.1, R1 and V3.2
tool_choice "required" over four tools with a scripted name that is no tool's and
arguments that break the schema, masked into a call of an offered tool that validates
against that tool's schema, while the same text under "auto" does not; and everything again
on V3.1's template over a vocabulary where DeepSeek's markers are control tokens, as
llama.cpp's converter makes them) and scripted
outputs (tests/engine_script: the model's tokens are given, everything else is
the product: template, tokenizer, scheduler, output parsers, the four API shapes).

Per model: a tool call with reasoning through /v1/chat/completions (whole and
streamed, read by the official openai client), /v1/responses (whole, and streamed
through the client's event accumulator) and /v1/messages (Anthropic shapes, raw
SSE checked event by event); the round trip with the tool's result; the prompt
sparkd built equals transformers' own rendering of the same conversation
(render_jinja_template) tokenized by HF tokenizers (Qwen3: chat, responses and
messages translations). Then: previous_response_id, cached_tokens, x-api-key,
Anthropic error shape, count_tokens, and an engine fault mid-stream (error event,
no [DONE]; whole: 503). Runs in both passes (~20 s; the models are built once
into build/script-models by make_script_models.py)."""
import json
import os
import shutil
import sys
import tempfile
import http.client

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "e2e"))
sys.path.insert(0, os.path.join(HERE, ".."))
import harness  # noqa: E402
import make_script_models  # noqa: E402
from testlib import exit_code, ok  # noqa: E402

BUILD = os.environ.get("SPARKD_BUILD", os.path.join(harness.ROOT, "build"))
MODELS = os.path.join(harness.ROOT, "build", "script-models")
KEY = harness.API_KEY
TOOLS = [{"type": "function", "function": {"name": "get_weather", "description": "Current weather in a city",
                                           "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                                                          "required": ["city"]}}}]
RESP_TOOLS = [{"type": "function", "name": "get_weather", "description": "Current weather in a city",
               "parameters": TOOLS[0]["function"]["parameters"]}]
ANTH_TOOLS = [{"name": "get_weather", "description": "Current weather in a city",
               "input_schema": TOOLS[0]["function"]["parameters"]}]
REASONING = "The user wants the weather."
FINAL = "It is 5C and sunny in Oslo."

# what each model writes for: reasoning + a get_weather(Oslo) call; the final answer
SCRIPTS = {
    "qwen3": {
        "call": "<think>\n%s\n</think>\n\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Oslo\"}}\n"
                "</tool_call><|im_end|>" % REASONING,
        "final": "<think>\n\n</think>\n\n%s<|im_end|>" % FINAL,
        # two calls and text after them: parallel_tool_calls false keeps only the first
        "two": "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Oslo\"}}\n</tool_call>\n"
               "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Bergen\"}}\n</tool_call>"
               "\nand more text that is not a call<|im_end|>",
    },
    "qwen3-coder": {
        "call": "<tool_call>\n<function=get_weather>\n<parameter=city>\nOslo\n</parameter>\n</function>\n</tool_call><|im_end|>",
        "final": "%s<|im_end|>" % FINAL,
        # after the forced "<tool_call>\n<function=plan_trip>\n": parameters that break the
        # schema (a wrong key, a non-integer for an integer, a word for a boolean, a value
        # outside the enum, a string that closes the call early); the grammar must repair them
        "forced_xml": "<parameter=cit>\nOslo </tool_call>\n</parameter>\n<parameter=days>\n3.5\n</parameter>\n"
                      "<parameter=unit>\nkelvin\n</parameter>\n<parameter=exact>\nyes\n</parameter>\n"
                      "</function>\n</tool_call><|im_end|>",
    },
    "gpt-oss": {
        "call": "<|channel|>analysis<|message|>%s<|end|><|start|>assistant<|channel|>commentary to=functions.get_weather "
                "<|constrain|>json<|message|>{\"city\":\"Oslo\"}<|call|>" % REASONING,
        "final": "<|channel|>final<|message|>%s<|return|>" % FINAL,
    },
    # DeepSeek's tool-call tokens, both generations (V3.1's template closes the
    # reasoning in the prompt; R1-Distill's leaves it to the model unless enable_thinking)
    "deepseek-v3.1": {
        "call": "<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>get_weather<｜tool▁sep｜>{\"city\": \"Oslo\"}"
                "<｜tool▁call▁end｜><｜tool▁calls▁end｜><|im_end|>",
        "final": "%s<|im_end|>" % FINAL,
        "forced": "{\"city\": \"Oslo\"}<|im_end|>",
    },
    "deepseek-r1": {
        "call": "<think>\n%s\n</think>\n\n<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>get_weather\n"
                "```json\n{\"city\": \"Oslo\"}\n```<｜tool▁call▁end｜><｜tool▁calls▁end｜><|im_end|>" % REASONING,
        "final": "<think>\nDone.\n</think>\n\n%s<|im_end|>" % FINAL,
        "forced": "{\"city\": \"Oslo\"}<|im_end|>",
    },
    # V3.2's DSML markup (the template closes the reasoning in the prompt unless thinking);
    # a forced call prefills the block and the invoke, the model writes the parameters
    "deepseek-v3.2": {
        "call": "Checking.\n\n<｜DSML｜function_calls>\n<｜DSML｜invoke name=\"get_weather\">\n"
                "<｜DSML｜parameter name=\"city\" string=\"true\">Oslo</｜DSML｜parameter>\n</｜DSML｜invoke>\n"
                "</｜DSML｜function_calls><|im_end|>",
        "final": "%s<|im_end|>" % FINAL,
        "forced": "<｜DSML｜parameter name=\"city\" string=\"true\">Oslo</｜DSML｜parameter>\n</｜DSML｜invoke>\n"
                  "</｜DSML｜function_calls><|im_end|>",
        # "required" over several tools: the prefill stops at name=", the model names one
        "forced_any": "get_weather\">\n<｜DSML｜parameter name=\"city\" string=\"true\">Oslo</｜DSML｜parameter>\n"
                      "</｜DSML｜invoke>\n</｜DSML｜function_calls><|im_end|>",
    },
}
# "required" over four tools (REQ_TOOLS, one name a prefix of another): after the prefill the scripted model names a
# tool that does not exist ("plan_trp") and writes arguments that break plan_trip's schema
# (a wrong key, a non-integer for an integer, a value outside the enum, a word for a
# boolean); the mask must turn that into a call of an offered tool whose arguments
# validate against THAT tool's schema. OPENERS: the prefill, so the same text can be
# scripted under tool_choice "auto" (no mask) as the negative control.
SCRIPTS["qwen3-coder"]["req_bad"] = (
    "plan_trp>\n<parameter=cit>\nOslo </tool_call>\n</parameter>\n<parameter=days>\n3.5\n</parameter>\n"
    "<parameter=unit>\nkelvin\n</parameter>\n<parameter=exact>\nyes\n</parameter>\n</function>\n</tool_call><|im_end|>")
SCRIPTS["gpt-oss"]["req_bad"] = (
    "plan_trp <|constrain|>json<|message|>{\"cit\": \"Oslo\", \"days\": 3.5, \"unit\": \"kelvin\", "
    "\"exact\": \"yes\"}<|call|>")
SCRIPTS["deepseek-v3.1"]["req_bad"] = (
    "plan_trp<｜tool▁sep｜>{\"cit\": \"Oslo\", \"days\": 3.5, \"unit\": \"kelvin\", \"exact\": \"yes\"}"
    "<｜tool▁call▁end｜><｜tool▁calls▁end｜><|im_end|>")
SCRIPTS["deepseek-v3.2"]["req_bad"] = (
    "plan_trp\">\n<｜DSML｜parameter name=\"cit\" string=\"true\">Oslo</｜DSML｜parameter>\n"
    "<｜DSML｜parameter name=\"days\" string=\"false\">3.5</｜DSML｜parameter>\n"
    "<｜DSML｜parameter name=\"unit\" string=\"true\">kelvin</｜DSML｜parameter>\n"
    "<｜DSML｜parameter name=\"exact\" string=\"true\">yes</｜DSML｜parameter>\n"
    "</｜DSML｜invoke>\n</｜DSML｜function_calls><|im_end|>")
SCRIPTS["deepseek-r1"]["req_bad"] = (
    "plan_trp\n```json\n{\"cit\": \"Oslo\", \"days\": 3.5, \"unit\": \"kelvin\", \"exact\": \"yes\"}\n```"
    "<｜tool▁call▁end｜><｜tool▁calls▁end｜><|im_end|>")
# V3.2 named (plan_trip): the parameters after the prefilled invoke break the schema
SCRIPTS["deepseek-v3.2"]["named_bad"] = SCRIPTS["deepseek-v3.2"]["req_bad"][len("plan_trp\">\n"):]
# the same V3.1 text where the markers are control tokens; "plan" is a prefix of "plan_trip"
SCRIPTS["deepseek-v3.1-ctl"] = dict(SCRIPTS["deepseek-v3.1"])
# the model names "plan", then the separator token right there (where "plan_trip" could go on)
SCRIPTS["deepseek-v3.1-ctl"]["req_plan"] = "plan<｜tool▁sep｜>{}<｜tool▁call▁end｜><｜tool▁calls▁end｜><|im_end|>"
OPENERS = {"deepseek-v3.1-ctl": "<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>",
           "qwen3-coder": "<tool_call>\n<function=", "gpt-oss": "<|channel|>commentary to=functions.",
           "deepseek-v3.1": "<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>",
           # R1's prompt opens the reasoning: the forced prefix closes it first
           "deepseek-r1": "\n</think>\n\n<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>",
           "deepseek-v3.2": "<｜DSML｜function_calls>\n<｜DSML｜invoke name=\""}
for _n, _o in OPENERS.items():
    SCRIPTS[_n]["req_bad_auto"] = _o + SCRIPTS[_n]["req_bad"]
SCRIPTS["deepseek-v3.2"]["named_bad_auto"] = OPENERS["deepseek-v3.2"] + "plan_trip\">\n" + SCRIPTS["deepseek-v3.2"]["named_bad"]
TRIP = {"type": "object", "properties": {"city": {"type": "string"}, "days": {"type": "integer"},
                                         "unit": {"type": "string", "enum": ["c", "f"]}, "exact": {"type": "boolean"}},
        "required": ["city", "days"], "additionalProperties": False}
# a nested array of objects under a named forced call (Qwen3-Coder's XML, V3.2's DSML): the
# scripted value breaks the sub-schema (a non-integer nested integer, more items than
# maxItems); masked, the arguments validate against the whole schema; under "auto" the same
# text does not (so the nested schema, not only the markup, is what the mask enforced)
NEST = {"type": "object", "properties": {
    "city": {"type": "string"},
    "stops": {"type": "array", "minItems": 1, "maxItems": 2, "items": {
        "type": "object", "properties": {"name": {"type": "string"}, "nights": {"type": "integer"}},
        "required": ["name", "nights"], "additionalProperties": False}}},
    "required": ["city", "stops"], "additionalProperties": False}
NEST_TOOLS = [{"type": "function", "function": {"name": "plan_stops", "description": "Plan stops", "parameters": NEST}}]
_STOPS = '[{"name": "Bergen", "nights": 2.5}, {"name": "Voss", "nights": 1}, {"name": "Flam", "nights": 1}]'
SCRIPTS["qwen3-coder"]["nest_bad"] = (
    "<parameter=city>\nOslo\n</parameter>\n<parameter=stops>\n" + _STOPS + "\n</parameter>\n</function>\n"
    "</tool_call><|im_end|>")
SCRIPTS["qwen3-coder"]["nest_bad_auto"] = "<tool_call>\n<function=plan_stops>\n" + SCRIPTS["qwen3-coder"]["nest_bad"]
SCRIPTS["deepseek-v3.2"]["nest_bad"] = (
    "<｜DSML｜parameter name=\"city\" string=\"true\">Oslo</｜DSML｜parameter>\n"
    "<｜DSML｜parameter name=\"stops\" string=\"false\">" + _STOPS + "</｜DSML｜parameter>\n"
    "</｜DSML｜invoke>\n</｜DSML｜function_calls><|im_end|>")
SCRIPTS["deepseek-v3.2"]["nest_bad_auto"] = (
    "<｜DSML｜function_calls>\n<｜DSML｜invoke name=\"plan_stops\">\n" + SCRIPTS["deepseek-v3.2"]["nest_bad"])
REQ_TOOLS = TOOLS + [{"type": "function", "function": {"name": "plan_trip", "description": "Plan a trip",
                                                       "parameters": TRIP}},
                     {"type": "function", "function": {"name": "get_time", "description": "The time", "parameters": {
                         "type": "object", "properties": {"tz": {"type": "string", "enum": ["UTC", "CET"]}},
                         "required": ["tz"], "additionalProperties": False}}},
                     # a name that is a prefix of another's
                     {"type": "function", "function": {"name": "plan", "description": "Plan",
                                                       "parameters": {"type": "object", "properties": {}}}}]


def valid_call(r, tools):
    """'' when the reply is one call of an offered tool whose arguments validate with
    jsonschema against that tool's schema (and no content); else why not."""
    import jsonschema
    try:
        m = r.choices[0].message
        if not m.tool_calls or len(m.tool_calls) != 1:
            return "not one tool call"
        fn = m.tool_calls[0].function
        schema = {t["function"]["name"]: t["function"]["parameters"] for t in tools}.get(fn.name)
        if schema is None:
            return "%r is not an offered tool" % fn.name
        jsonschema.validate(json.loads(fn.arguments), schema)
        if (m.content or "").strip():
            return "content next to the call"
        return ""
    except Exception as ex:  # noqa: BLE001
        return repr(ex)[:300]


def check_required_masked(st, cl, name, scripts):
    """tool_choice "required" over four tools (and V3.2 named) with scripted text that
    names a tool that does not exist and breaks the schema: masked, the reply is a valid
    call of an offered tool; the same text under tool_choice "auto" (no mask) is not."""
    cases = [("required", "req_bad", "required")]
    if "named_bad" in scripts:
        cases.append(("named plan_trip", "named_bad", {"type": "function", "function": {"name": "plan_trip"}}))
    if "req_plan" in scripts:
        fu = [{"role": "user", "content": "Plan. [[script:req_plan]]"}]
        rf = cl.chat.completions.create(model=name, messages=fu, tools=REQ_TOOLS, tool_choice="required", max_tokens=100)
        m = rf.choices[0].message
        ok(not valid_call(rf, REQ_TOOLS) and m.tool_calls[0].function.name == "plan",
           "%s: tool_choice required, the name \"plan\" (a prefix of \"plan_trip\") ended by the separator token -> "
           "plan({})" % name, rf.model_dump_json()[:500])
    for label, key, tc in cases:
        fu = [{"role": "user", "content": "Plan a trip to Oslo. [[script:%s]]" % key}]
        rf = cl.chat.completions.create(model=name, messages=fu, tools=REQ_TOOLS, tool_choice=tc, max_tokens=300)
        why = valid_call(rf, REQ_TOOLS)
        m = rf.choices[0].message
        got = (m.tool_calls[0].function.name, m.tool_calls[0].function.arguments) if m.tool_calls else None
        ok(not why, "%s: tool_choice %s over %d tools, %sarguments breaking the schema -> masked into a valid call %s"
           % (name, label, len(REQ_TOOLS), "a bad name and " if tc == "required" else "", got),
           (why, rf.model_dump_json()[:700]))
        if key == "req_bad":
            # the same tools again: the grammars come from the cache (no compile), the same call
            h0 = metric(st, "sparkd_grammar_cache_hits_total")
            r2 = cl.chat.completions.create(model=name, messages=fu, tools=REQ_TOOLS, tool_choice=tc, max_tokens=300)
            m2 = r2.choices[0].message
            got2 = (m2.tool_calls[0].function.name, m2.tool_calls[0].function.arguments) if m2.tool_calls else None
            h1 = metric(st, "sparkd_grammar_cache_hits_total")
            ok(got2 == got and h1 is not None and h0 is not None and h1 > h0,
               "%s: the same forced request again -> the same call, its grammars from the cache (hits %s -> %s)"
               % (name, h0, h1), (got, got2))
        fu = [{"role": "user", "content": "Plan a trip to Oslo. [[script:%s_auto]]" % key}]
        ra = cl.chat.completions.create(model=name, messages=fu, tools=REQ_TOOLS, max_tokens=300)
        why = valid_call(ra, REQ_TOOLS)
        ok(why != "", "%s: control: the same text under tool_choice auto (no mask) is no valid call (%s)" % (name, why),
           ra.model_dump_json()[:500])


def check_nested_masked(cl, name):
    """a named forced call whose scripted nested array breaks its sub-schema: masked, the
    arguments validate (jsonschema) against the whole tool schema; under auto they do not."""
    tc = {"type": "function", "function": {"name": "plan_stops"}}
    fu = [{"role": "user", "content": "Plan stops. [[script:nest_bad]]"}]
    rf = cl.chat.completions.create(model=name, messages=fu, tools=NEST_TOOLS, tool_choice=tc, max_tokens=300)
    why = valid_call(rf, NEST_TOOLS)
    m = rf.choices[0].message
    got = m.tool_calls[0].function.arguments if m.tool_calls else None
    ok(not why and m.tool_calls[0].function.name == "plan_stops",
       "%s: forced plan_stops, a nested array breaking its sub-schema (2.5 for an integer, 3 items over maxItems 2) "
       "-> masked into arguments valid for the whole schema %s" % (name, got), (why, rf.model_dump_json()[:700]))
    fu = [{"role": "user", "content": "Plan stops. [[script:nest_bad_auto]]"}]
    ra = cl.chat.completions.create(model=name, messages=fu, tools=NEST_TOOLS, max_tokens=300)
    why = valid_call(ra, NEST_TOOLS)
    ma = ra.choices[0].message
    ok(why != "" and ma.tool_calls and ma.tool_calls[0].function.name == "plan_stops",
       "%s: control: the same text under tool_choice auto parses as a plan_stops call that is not valid (%s)"
       % (name, why), ra.model_dump_json()[:500])


HAS_REASONING = {"qwen3": True, "qwen3-coder": False, "gpt-oss": True, "deepseek-v3.1": False, "deepseek-r1": True,
                 "deepseek-v3.2": False, "deepseek-v3.1-ctl": False}
# text before the call that must come back as content
CALL_CONTENT = {"deepseek-v3.2": "Checking."}


def post(st, path, body, headers=None):
    c = http.client.HTTPSConnection("127.0.0.1", st.port, context=st.ssl_ctx(), timeout=60)
    h = {"Authorization": "Bearer " + KEY, "Content-Type": "application/json"}
    h.update(headers or {})
    c.request("POST", path, json.dumps(body), h)
    r = c.getresponse()
    data = r.read()
    c.close()
    return r.status, {k.lower(): v for k, v in r.getheaders()}, data


def sse(data):
    """[(event name or None, parsed data or raw)] of an event stream."""
    out = []
    for block in data.decode().split("\n\n"):
        ev, payload = None, None
        for line in block.split("\n"):
            if line.startswith("event: "):
                ev = line[7:]
            elif line.startswith("data: "):
                payload = line[6:]
        if payload is not None:
            out.append((ev, payload if payload == "[DONE]" else json.loads(payload)))
    return out


def hf_prompt_tokens(name, messages, tools):
    """transformers' rendering of the template, tokenized by HF tokenizers."""
    from transformers.utils import chat_template_utils as ctu
    from tokenizers import Tokenizer
    import tok_ref
    src = open(os.path.join(MODELS, name + ".jinja")).read()
    text, _ = ctu.render_jinja_template(conversations=[messages], tools=tools, chat_template=src,
                                        add_generation_prompt=True)
    mod, tj, _, _ = tok_ref.BYTE_LEVEL["qwen3"]
    return len(Tokenizer.from_file(tok_ref.package_file(mod, *tj)).encode(text[0], add_special_tokens=False).ids)


def stop_checked(st, label):
    """SIGTERM, then the log must hold no sanitizer report (the -san pass)."""
    import signal
    if st.sparkd and st.sparkd.poll() is None:
        st.sparkd.send_signal(signal.SIGTERM)
        try:
            st.sparkd.wait(timeout=60)
        except Exception:  # noqa: BLE001
            pass
    log = st.log()
    ok("ERROR: AddressSanitizer" not in log and "runtime error" not in log and "LeakSanitizer" not in log,
       "%s: no sanitizer report in the server log" % label, log[-1500:])
    st.stop()


def client(st):
    import openai
    mk = getattr(openai, "DefaultHttpx2Client", None) or openai.DefaultHttpxClient
    return openai.OpenAI(base_url=st.base + "/v1", api_key=KEY, max_retries=0, http_client=mk(verify=st.cert, timeout=60))


def check_model(name, scripts):
    st = harness.Stack(ini_extra={"model": {"path": os.path.join(MODELS, name + ".gguf"), "id": name, "context": "4096",
                                            "chat_template_file": os.path.join(MODELS, name + ".jinja")}})
    try:
        st.start()
        cl = client(st)
        user = [{"role": "user", "content": "What is the weather in Oslo? [[script:call]]"}]
        # chat, whole
        r = cl.chat.completions.create(model=name, messages=user, tools=TOOLS)
        m = r.choices[0].message
        good = (r.choices[0].finish_reason == "tool_calls" and m.tool_calls and len(m.tool_calls) == 1 and
                m.tool_calls[0].function.name == "get_weather" and
                json.loads(m.tool_calls[0].function.arguments) == {"city": "Oslo"} and
                m.tool_calls[0].id.startswith("call_") and len(m.tool_calls[0].id) > 12)
        if HAS_REASONING[name]:
            good = good and (m.model_extra or {}).get("reasoning_content", "").strip() == REASONING and \
                (m.model_extra or {}).get("reasoning", "").strip() == REASONING
        if name in CALL_CONTENT:
            good = good and (m.content or "").strip() == CALL_CONTENT[name]
        ok(good, "%s: chat -> reasoning + get_weather(Oslo), finish tool_calls" % name, r.model_dump_json()[:600])
        if name in ("qwen3", "deepseek-v3.1", "deepseek-r1", "deepseek-v3.2"):
            want = hf_prompt_tokens(name, user, TOOLS)
            ok(r.usage.prompt_tokens == want, "%s: chat prompt == transformers' rendering (%d tokens)" % (name, want),
               (r.usage.prompt_tokens, want))
        if "forced" in scripts:
            # a forced call writes the model's own opener and constrains the arguments
            fu = [{"role": "user", "content": "Weather in Oslo, please. [[script:forced]]"}]
            for tc in ({"type": "function", "function": {"name": "get_weather"}}, "required"):
                rf = cl.chat.completions.create(model=name, messages=fu, tools=TOOLS, tool_choice=tc)
                mf = rf.choices[0].message
                ok(mf.tool_calls and len(mf.tool_calls) == 1 and mf.tool_calls[0].function.name == "get_weather" and
                   json.loads(mf.tool_calls[0].function.arguments) == {"city": "Oslo"} and not (mf.content or "").strip(),
                   "%s: tool_choice %s -> get_weather(Oslo) in DeepSeek's syntax" % (name, json.dumps(tc)),
                   rf.model_dump_json()[:600])
        if "forced_xml" in scripts:
            # Qwen3-Coder's XML parameters under the tool's schema: the scripted model writes
            # parameters that break it, the grammar mask repairs them; the arguments the openai
            # client reads must validate with jsonschema against the schema
            import jsonschema
            params = {"type": "object", "properties": {"city": {"type": "string"}, "days": {"type": "integer"},
                                                       "unit": {"type": "string", "enum": ["c", "f"]},
                                                       "exact": {"type": "boolean"}},
                      "required": ["city", "days"], "additionalProperties": False}
            trip = [{"type": "function", "function": {"name": "plan_trip", "parameters": params}}]
            fu = [{"role": "user", "content": "Plan a trip to Oslo. [[script:forced_xml]]"}]
            for tc in ({"type": "function", "function": {"name": "plan_trip"}}, "required"):
                rf = cl.chat.completions.create(model=name, messages=fu, tools=trip, tool_choice=tc, max_tokens=200)
                mf = rf.choices[0].message
                args, why = None, ""
                try:
                    args = json.loads(mf.tool_calls[0].function.arguments)
                    jsonschema.validate(args, params)
                except Exception as ex:  # noqa: BLE001
                    why = repr(ex)[:300]
                ok(not why and len(mf.tool_calls) == 1 and mf.tool_calls[0].function.name == "plan_trip" and
                   not (mf.content or "").strip(),
                   "%s: tool_choice %s, parameters that break the schema -> repaired by the grammar, valid for "
                   "jsonschema (%s)" % (name, json.dumps(tc), json.dumps(args)), (why, rf.model_dump_json()[:700]))
        if "req_bad" in scripts:
            check_required_masked(st, cl, name, scripts)
        if "nest_bad" in scripts:
            check_nested_masked(cl, name)
        if "forced_any" in scripts:
            two = TOOLS + [{"type": "function", "function": {"name": "get_time", "description": "The time", "parameters": {"type": "object"}}}]
            fu = [{"role": "user", "content": "Weather in Oslo, please. [[script:forced_any]]"}]
            rf = cl.chat.completions.create(model=name, messages=fu, tools=two, tool_choice="required")
            mf = rf.choices[0].message
            ok(mf.tool_calls and len(mf.tool_calls) == 1 and mf.tool_calls[0].function.name == "get_weather" and
               json.loads(mf.tool_calls[0].function.arguments) == {"city": "Oslo"} and not (mf.content or "").strip(),
               "%s: tool_choice \"required\" over two tools -> the model names get_weather(Oslo)" % name,
               rf.model_dump_json()[:600])
        # chat, streamed: the deltas add up to the same call
        chunks = list(cl.chat.completions.create(model=name, messages=user, tools=TOOLS, stream=True,
                                                 stream_options={"include_usage": True}))
        args, fname, reason, finish = "", None, "", None
        for c in chunks:
            if not c.choices:
                continue
            d = c.choices[0].delta
            reason += (d.model_extra or {}).get("reasoning_content") or ""
            for tc in d.tool_calls or []:
                fname = tc.function.name or fname
                args += tc.function.arguments or ""
            finish = c.choices[0].finish_reason or finish
        ok(fname == "get_weather" and json.loads(args) == {"city": "Oslo"} and finish == "tool_calls" and
           (not HAS_REASONING[name] or reason.strip() == REASONING) and chunks[-1].usage.completion_tokens > 0,
           "%s: chat streamed -> the same call from deltas, usage chunk" % name, (fname, args, reason, finish))
        # the round trip: the tool's result in, the final answer out
        call = m.tool_calls[0]
        turn2 = user + [{"role": "assistant", "content": None, "tool_calls": [
            {"id": call.id, "type": "function", "function": {"name": "get_weather", "arguments": call.function.arguments}}]},
            {"role": "tool", "tool_call_id": call.id, "content": "5C, sunny [[script:final]]"}]
        r2 = cl.chat.completions.create(model=name, messages=turn2, tools=TOOLS)
        ok(r2.choices[0].message.content.strip() == FINAL and r2.choices[0].finish_reason == "stop",
           "%s: chat round trip -> final answer" % name, r2.model_dump_json()[:400])

        # responses, whole and streamed (the client's accumulator checks the event sequence)
        rs = cl.responses.create(model=name, input="What is the weather in Oslo? [[script:call]]", tools=RESP_TOOLS)
        kinds = [o.type for o in rs.output]
        fc = [o for o in rs.output if o.type == "function_call"]
        good = rs.status == "completed" and fc and fc[0].name == "get_weather" and json.loads(fc[0].arguments) == {"city": "Oslo"}
        if HAS_REASONING[name]:
            good = good and kinds[0] == "reasoning" and rs.output[0].content[0].text.strip() == REASONING
        ok(good, "%s: responses -> %s" % (name, kinds), rs.model_dump_json()[:600])
        with cl.responses.stream(model=name, input="What is the weather in Oslo? [[script:call]]", tools=RESP_TOOLS) as s:
            events = [e.type for e in s]
            final = s.get_final_response()
        fcs = [o for o in final.output if o.type == "function_call"]
        ok(events[0] == "response.created" and events[-1] == "response.completed" and
           "response.function_call_arguments.delta" in events and fcs and json.loads(fcs[0].arguments) == {"city": "Oslo"},
           "%s: responses streamed -> %d events, created .. completed, the same call" % (name, len(events)), events)
        # the round trip through previous_response_id
        rs2 = cl.responses.create(model=name, previous_response_id=rs.id, tools=RESP_TOOLS, input=[
            {"type": "function_call_output", "call_id": fc[0].call_id, "output": "5C, sunny [[script:final]]"}])
        ok(rs2.output_text.strip() == FINAL and rs2.usage.input_tokens > rs.usage.input_tokens,
           "%s: responses previous_response_id round trip -> final answer" % name, rs2.model_dump_json()[:400])

        # messages (Anthropic), whole and streamed
        body = {"model": name, "max_tokens": 200, "tools": ANTH_TOOLS,
                "messages": [{"role": "user", "content": "What is the weather in Oslo? [[script:call]]"}]}
        s, _, b = post(st, "/v1/messages", body, {"x-api-key": KEY, "Authorization": ""})
        j = json.loads(b) if s == 200 else {}
        blocks = [c["type"] for c in j.get("content", [])]
        tu = [c for c in j.get("content", []) if c["type"] == "tool_use"]
        good = s == 200 and j["stop_reason"] == "tool_use" and tu and tu[0]["input"] == {"city": "Oslo"}
        if HAS_REASONING[name]:
            good = good and blocks[0] == "thinking" and j["content"][0]["thinking"].strip() == REASONING
        ok(good, "%s: messages (x-api-key) -> %s, stop_reason tool_use" % (name, blocks), b[:500])
        s, hd, b = post(st, "/v1/messages", dict(body, stream=True))
        evs = sse(b)
        names = [e for e, _ in evs]
        partial = "".join(d["delta"]["partial_json"] for e, d in evs
                          if e == "content_block_delta" and d["delta"]["type"] == "input_json_delta")
        starts = [d["content_block"]["type"] for e, d in evs if e == "content_block_start"]
        stops = names.count("content_block_stop")
        md = [d for e, d in evs if e == "message_delta"]
        ok(s == 200 and names[0] == "message_start" and names[-1] == "message_stop" and "tool_use" in starts and
           stops == len(starts) and json.loads(partial) == {"city": "Oslo"} and md and
           md[0]["delta"]["stop_reason"] == "tool_use" and all(e == d.get("type") for e, d in evs),
           "%s: messages streamed -> %s" % (name, " ".join(n for n in names if n != "content_block_delta")), names)
        turn2 = body["messages"] + [{"role": "assistant", "content": j["content"]},
                                    {"role": "user", "content": [{"type": "tool_result", "tool_use_id": tu[0]["id"],
                                                                  "content": "5C, sunny [[script:final]]"}]}]
        s, _, b = post(st, "/v1/messages", dict(body, messages=turn2))
        j2 = json.loads(b) if s == 200 else {}
        texts = [c["text"] for c in j2.get("content", []) if c["type"] == "text"]
        ok(s == 200 and texts and texts[-1].strip() == FINAL and j2["stop_reason"] == "end_turn",
           "%s: messages tool_result round trip -> final answer, end_turn" % name, b[:400])
        if name == "qwen3":
            # the Anthropic translation renders as transformers renders the same conversation
            oa = [{"role": "user", "content": "What is the weather in Oslo? [[script:call]]"},
                  {"role": "assistant", "content": "", "reasoning_content": REASONING,
                   "tool_calls": [{"id": tu[0]["id"], "type": "function",
                                   "function": {"name": "get_weather", "arguments": {"city": "Oslo"}}}]},
                  {"role": "tool", "tool_call_id": tu[0]["id"], "content": "5C, sunny [[script:final]]"}]
            want = hf_prompt_tokens(name, oa, TOOLS)
            ok(j2["usage"]["input_tokens"] + j2["usage"]["cache_read_input_tokens"] == want,
               "%s: messages prompt == transformers' rendering (%d tokens)" % (name, want), j2.get("usage"))
            s, _, b = post(st, "/v1/messages/count_tokens", {k: v for k, v in dict(body, messages=turn2).items()
                                                              if k != "max_tokens"})
            ok(s == 200 and json.loads(b)["input_tokens"] == want, "%s: count_tokens == the prompt (%d)" % (name, want), b)
    finally:
        stop_checked(st, name)


def check_misc():
    """On Qwen3: cached tokens, Anthropic errors, faults mid-stream."""
    st = harness.Stack(ini_extra={"model": {"path": os.path.join(MODELS, "qwen3.gguf"), "id": "qwen3", "context": "4096",
                                            "chat_template_file": os.path.join(MODELS, "qwen3.jinja")}})
    try:
        st.start()
        cl = client(st)
        msgs = [{"role": "system", "content": "You are a careful assistant. " * 20},
                {"role": "user", "content": "Hi [[script:final]]"}]
        cl.chat.completions.create(model="qwen3", messages=msgs)
        r = cl.chat.completions.create(model="qwen3", messages=msgs)
        cached = r.usage.prompt_tokens_details.cached_tokens
        ok(cached >= 16 and cached < r.usage.prompt_tokens and cached % 16 == 0,
           "usage.prompt_tokens_details.cached_tokens: %d of %d on a repeat" % (cached, r.usage.prompt_tokens), r.usage)
        s, _, b = post(st, "/v1/messages", {"model": "qwen3", "messages": [{"role": "user", "content": "x"}]})
        j = json.loads(b)
        ok(s == 400 and j.get("type") == "error" and j["error"]["type"] == "invalid_request_error" and
           "max_tokens" in j["error"]["message"], "messages: missing max_tokens -> 400 in Anthropic's error shape", b)
        s, _, b = post(st, "/v1/messages", {"model": "qwen3", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}]},
                       {"Authorization": "", "x-api-key": "wrong"})
        j = json.loads(b)
        ok(s == 401 and j["error"]["type"] == "authentication_error", "messages: wrong x-api-key -> 401 authentication_error", b)
        # an engine fault after 3 tokens: streams end with an error event (no [DONE] / no message_stop), whole -> 503
        os.makedirs(st.script_dir, exist_ok=True)
        cut = {"model": "qwen3", "messages": [{"role": "user", "content": "go [[script:fault]]"}], "stream": True}
        s, _, b = post(st, "/v1/chat/completions", cut)
        evs = sse(b)
        ok(s == 200 and evs and "error" in evs[-1][1] and not any(d == "[DONE]" for _, d in evs),
           "engine fault mid-stream (chat): error event, no [DONE]", evs[-2:])
        s, _, b = post(st, "/v1/messages", {"model": "qwen3", "max_tokens": 50, "stream": True,
                                            "messages": [{"role": "user", "content": "go [[script:fault]]"}]})
        evs = sse(b)
        ok(s == 200 and evs[-1][0] == "error" and evs[-1][1]["error"]["type"] in ("overloaded_error", "api_error") and
           "message_stop" not in [e for e, _ in evs], "engine fault mid-stream (messages): error event, no message_stop",
           evs[-2:])
        s, hd, b = post(st, "/v1/chat/completions", dict(cut, stream=False))
        ok(s == 503 and json.loads(b)["error"]["code"] == "engine_error", "engine fault (whole reply): 503 engine_error", b)
        s, _, b = post(st, "/v1/chat/completions", {"model": "qwen3", "messages": [{"role": "user", "content": "again [[script:final]]"}]})
        ok(s == 200, "after a fault the server serves", b[:200])
        # an engine that can no longer step (ERR_UNAVAILABLE: a tensor-parallel group that lost a rank)
        st_h, _, _ = st.get("/health")
        open(os.path.join(st.script_dir, "dead.txt"), "w").write("#fail-after 2 unavailable\nOnce upon a time.")
        s, _, b = post(st, "/v1/chat/completions", {"model": "qwen3", "messages": [{"role": "user", "content": "go [[script:dead]]"}]})
        s2, _, hb = st.get("/health")
        ok(st_h == 200 and s == 503 and s2 == 503 and json.loads(hb).get("status") == "failed",
           "engine unavailable (a lost tensor-parallel rank): 503, then /health 503 status failed", (st_h, s, b[:200], s2, hb))
    finally:
        stop_checked(st, "faults")


def check_formats():
    """Reasoning detection beyond the three: DeepSeek-R1-Distill's template (the
    prompt opens <think>), the same template holding only </think> (the model
    opens it), and [model] output_format overriding detection (plain; deepseek-v3.2
    over Qwen3's template)."""
    cases = [("r1-distill", "The user asks for a greeting.\n</think>\n\nHello there.<|im_end|>", "auto"),
             ("r1-only-close", "<think>\nThe user asks for a greeting.\n</think>\n\nHello there.<|im_end|>", "auto"),
             ("qwen3", "<think>\nThe user asks for a greeting.\n</think>\n\nHello there.<|im_end|>", "plain")]
    for tpl, script, fmt in cases:
        d = os.environ["SPARKD_SCRIPT_DIR"]
        open(os.path.join(d, "r1.txt"), "w").write(script)
        st = harness.Stack(ini_extra={"model": {"path": os.path.join(MODELS, "qwen3.gguf"), "id": "m", "context": "4096",
                                                "chat_template_file": os.path.join(MODELS, tpl + ".jinja"),
                                                "output_format": fmt}})
        try:
            st.start()
            # llama.cpp's copy of R1-Distill's template closes the block it opens unless enable_thinking
            s, _, b = post(st, "/v1/chat/completions", {"model": "m", "messages": [{"role": "user", "content": "hi [[script:r1]]"}],
                                                        "chat_template_kwargs": {"enable_thinking": True}})
            m = json.loads(b)["choices"][0]["message"] if s == 200 else {}
            if fmt == "plain":
                ok(s == 200 and "<think>" in (m.get("content") or "") and not m.get("reasoning_content"),
                   "output_format = plain overrides detection: the reasoning stays in content", b[:300])
            else:
                ok(s == 200 and (m.get("reasoning_content") or "").strip() == "The user asks for a greeting." and
                   (m.get("content") or "").strip() == "Hello there.",
                   "%s template: reasoning detected and split from the answer" % tpl, b[:300])
        finally:
            stop_checked(st, tpl)
    # output_format = deepseek-v3.2 over a template that says otherwise (Qwen3's): DSML calls are read
    d = os.environ["SPARKD_SCRIPT_DIR"]
    open(os.path.join(d, "dsml.txt"), "w").write(SCRIPTS["deepseek-v3.2"]["call"])
    st = harness.Stack(ini_extra={"model": {"path": os.path.join(MODELS, "qwen3.gguf"), "id": "m", "context": "4096",
                                            "chat_template_file": os.path.join(MODELS, "qwen3.jinja"),
                                            "output_format": "deepseek-v3.2"}})
    try:
        st.start()
        s, _, b = post(st, "/v1/chat/completions", {"model": "m", "tools": TOOLS,
                                                    "messages": [{"role": "user", "content": "hi [[script:dsml]]"}]})
        m = json.loads(b)["choices"][0]["message"] if s == 200 else {}
        tc = m.get("tool_calls") or []
        ok(s == 200 and len(tc) == 1 and tc[0]["function"]["name"] == "get_weather" and
           json.loads(tc[0]["function"]["arguments"]) == {"city": "Oslo"} and (m.get("content") or "").strip() == "Checking.",
           "output_format = deepseek-v3.2 overrides detection: the DSML call is read", b[:400])
    finally:
        stop_checked(st, "dsml-override")


def check_parallel():
    """parallel_tool_calls (chat, responses) and disable_parallel_tool_use (messages):
    true/absent returns both calls the model wrote; false ends the generation after
    the first complete call (finish tool_calls, fewer completion tokens)."""
    st = harness.Stack(ini_extra={"model": {"path": os.path.join(MODELS, "qwen3.gguf"), "id": "qwen3", "context": "4096",
                                            "chat_template_file": os.path.join(MODELS, "qwen3.jinja")}})
    try:
        st.start()
        cl = client(st)
        user = [{"role": "user", "content": "Weather in Oslo and Bergen? [[script:two]]"}]
        cities = lambda calls: [json.loads(c.function.arguments)["city"] for c in calls or []]  # noqa: E731
        r2 = cl.chat.completions.create(model="qwen3", messages=user, tools=TOOLS)
        ok(cities(r2.choices[0].message.tool_calls) == ["Oslo", "Bergen"] and r2.choices[0].finish_reason == "tool_calls",
           "chat: parallel_tool_calls absent -> both calls", r2.model_dump_json()[:500])
        r1 = cl.chat.completions.create(model="qwen3", messages=user, tools=TOOLS, parallel_tool_calls=False)
        ok(cities(r1.choices[0].message.tool_calls) == ["Oslo"] and r1.choices[0].finish_reason == "tool_calls" and
           not (r1.choices[0].message.content or "").strip() and r1.usage.completion_tokens < r2.usage.completion_tokens,
           "chat: parallel_tool_calls false -> only the first call, generation ended there (%d < %d tokens)" % (
               r1.usage.completion_tokens, r2.usage.completion_tokens), r1.model_dump_json()[:500])
        args, idx, finish = {}, set(), None
        for c in cl.chat.completions.create(model="qwen3", messages=user, tools=TOOLS, parallel_tool_calls=False, stream=True):
            for tc in (c.choices[0].delta.tool_calls or []) if c.choices else []:
                idx.add(tc.index)
                args[tc.index] = args.get(tc.index, "") + (tc.function.arguments or "")
            finish = (c.choices[0].finish_reason if c.choices else None) or finish
        ok(idx == {0} and json.loads(args[0]) == {"city": "Oslo"} and finish == "tool_calls",
           "chat streamed: parallel_tool_calls false -> one call", (args, finish))
        rs = cl.responses.create(model="qwen3", input="Weather in Oslo and Bergen? [[script:two]]", tools=RESP_TOOLS,
                                 parallel_tool_calls=False)
        fc = [o for o in rs.output if o.type == "function_call"]
        ok(len(fc) == 1 and json.loads(fc[0].arguments) == {"city": "Oslo"} and rs.parallel_tool_calls is False,
           "responses: parallel_tool_calls false -> one function_call", rs.model_dump_json()[:500])
        for dis, want in ((False, ["Oslo", "Bergen"]), (True, ["Oslo"])):
            s, _, b = post(st, "/v1/messages", {"model": "qwen3", "max_tokens": 200, "tools": ANTH_TOOLS,
                                                "tool_choice": {"type": "auto", "disable_parallel_tool_use": dis},
                                                "messages": [{"role": "user", "content": "Weather? [[script:two]]"}]})
            j = json.loads(b) if s == 200 else {}
            got = [blk["input"]["city"] for blk in j.get("content", []) if blk.get("type") == "tool_use"]
            ok(got == want and j.get("stop_reason") == "tool_use",
               "messages: disable_parallel_tool_use %s -> %s" % (dis, want), b[:400])
    finally:
        stop_checked(st, "parallel")


def logged_prompts(st):
    """The chat prompts sparkd rendered, in order (log level debug prints each,
    "sparkd: chat prompt (N bytes): TEXT", up to 2000 bytes)."""
    log, out, at = st.log(), [], 0
    mark = "sparkd: chat prompt ("
    while True:
        at = log.find(mark, at)
        if at < 0:
            return out
        n = int(log[at + len(mark):log.index(" ", at + len(mark))])
        start = log.index("): ", at) + 3
        out.append(log[start:start + min(n, 2000)])
        at = start


def check_effort():
    """reasoning_effort (chat) and reasoning.effort (responses) reach GPT-OSS's
    real template over HTTP: the prompt sparkd rendered equals transformers'
    rendering of the same conversation with that effort ("Reasoning: high" in
    the system message); minimal / none map to low; absent leaves the
    template's default (medium)."""
    from transformers.utils import chat_template_utils as ctu
    src = open(os.path.join(MODELS, "gpt-oss.jinja")).read()
    st = harness.Stack(ini_extra={"model": {"path": os.path.join(MODELS, "gpt-oss.gguf"), "id": "gpt-oss", "context": "4096",
                                            "chat_template_file": os.path.join(MODELS, "gpt-oss.jinja")},
                                  "log": {"level": "debug"}})
    try:
        st.start()
        cl = client(st)
        user = [{"role": "user", "content": "Think hard. [[script:final]]"}]
        cases = [("chat", "high", "high"), ("chat", "low", "low"), ("chat", "minimal", "low"), ("chat", None, "medium"),
                 ("responses", "high", "high"), ("responses", "medium", "medium")]
        for api, effort, want in cases:
            n0 = len(logged_prompts(st))
            if api == "chat":
                kw = {"reasoning_effort": effort} if effort else {}
                r = cl.chat.completions.create(model="gpt-oss", messages=user, **kw)
                good = r.choices[0].message.content.strip() == FINAL
            else:
                r = cl.responses.create(model="gpt-oss", input=user[0]["content"], reasoning={"effort": effort})
                good = r.output_text.strip() == FINAL and r.reasoning.effort == effort
            ps = logged_prompts(st)
            got = ps[-1] if len(ps) > n0 else ""
            kw = {"reasoning_effort": want} if effort else {}
            ref, _ = ctu.render_jinja_template(conversations=[user], chat_template=src, add_generation_prompt=True, **kw)
            ok(good and ("Reasoning: %s\n" % want) in got and got == ref[0][:2000],
               "gpt-oss %s effort %s -> the template's system message says 'Reasoning: %s', prompt == transformers'"
               % (api, effort, want), (got[:400], ref[0][:400]))
    finally:
        stop_checked(st, "effort")


def metric(st, name):
    s, _, b = st.get("/metrics", headers={"Authorization": "Bearer " + KEY})
    for line in b.decode().splitlines():
        if line.startswith(name + " "):
            return float(line.split()[-1])
    return None


def check_n():
    """n > 1 on chat and completions: choices 0..n-1 (whole and streamed, read by
    the openai client), each a full reply of its own (reasoning split, content);
    usage counts the prompt once and every choice's tokens; the choices share the
    prompt's KV (the prefix cache's hit counter grows by the prompt's full blocks
    for each choice after the first); admission counts n sequences (429 when n
    cannot all be admitted)."""
    st = harness.Stack(ini_extra={"model": {"path": os.path.join(MODELS, "qwen3.gguf"), "id": "qwen3", "context": "4096",
                                            "chat_template_file": os.path.join(MODELS, "qwen3.jinja")},
                                  "engine": {"max_seqs": "2"}, "limits": {"max_queue": "2"}})
    try:
        st.start()
        cl = client(st)
        # a prompt of its own (no earlier request cached it)
        msgs = [{"role": "system", "content": "Choices share this prompt. " * 40},
                {"role": "user", "content": "Hi [[script:final]]"}]
        one = cl.chat.completions.create(model="qwen3", messages=[{"role": "user", "content": "Other [[script:final]]"}])
        single = one.usage.completion_tokens
        h0 = metric(st, "sparkd_prefix_cache_hit_tokens_total")
        r = cl.chat.completions.create(model="qwen3", messages=msgs, n=3)
        h1 = metric(st, "sparkd_prefix_cache_hit_tokens_total")
        P = r.usage.prompt_tokens
        shared = (P - 1) // 16 * 16
        ok([c.index for c in r.choices] == [0, 1, 2] and
           all(c.message.content.strip() == FINAL and c.finish_reason == "stop" for c in r.choices) and
           r.usage.completion_tokens == 3 * single and r.usage.total_tokens == P + 3 * single,
           "chat n = 3: choices 0..2, each the whole answer; usage counts 3 x %d tokens" % single,
           r.model_dump_json()[:600])
        ok(h1 - h0 >= 2 * shared, "chat n = 3: choices 1, 2 map the prompt's KV from choice 0 (%d hit tokens, >= 2 x %d)"
           % (h1 - h0, shared), (h0, h1, P))
        # streamed: chunks carry their choice's index; one usage chunk; [DONE] once
        s, _, b = post(st, "/v1/chat/completions", {"model": "qwen3", "messages": msgs, "n": 3, "stream": True,
                                                     "stream_options": {"include_usage": True}})
        evs = sse(b)
        text, fin, role = {}, {}, {}
        usage = [d["usage"] for _, d in evs if d != "[DONE]" and d.get("usage")]
        for _, d in evs:
            if d == "[DONE]":
                continue
            for c in d["choices"]:
                text[c["index"]] = text.get(c["index"], "") + (c["delta"].get("content") or "")
                role[c["index"]] = role.get(c["index"], 0) + (c["delta"].get("role") == "assistant")
                if c.get("finish_reason"):
                    fin[c["index"]] = fin.get(c["index"], []) + [c["finish_reason"]]
        ok(s == 200 and sorted(text) == [0, 1, 2] and all(text[i].strip() == FINAL for i in text) and
           all(fin.get(i) == ["stop"] and role[i] == 1 for i in range(3)) and len(usage) == 1 and
           usage[0]["completion_tokens"] == 3 * single and [d for _, d in evs].count("[DONE]") == 1 and
           evs[-1][1] == "[DONE]", "chat n = 3 streamed: per-index deltas, a role and a finish each, one usage chunk, one [DONE]",
           (text, fin, usage, len(evs)))
        # the same stream through the official client
        got = {}
        for c in cl.chat.completions.create(model="qwen3", messages=msgs, n=2, stream=True):
            for x in c.choices:
                got[x.index] = got.get(x.index, "") + (x.delta.content or "")
        ok(sorted(got) == [0, 1] and all(v.strip() == FINAL for v in got.values()),
           "chat n = 2 streamed, read by the openai client", got)
        # completions
        rc = cl.completions.create(model="qwen3", prompt="Say hi [[script:fim]]", n=2, max_tokens=30)
        ok([c.index for c in rc.choices] == [0, 1] and all(c.text == "return a + b" for c in rc.choices),
           "completions n = 2: choices 0, 1", rc.model_dump_json()[:400])
        # admission: max_seqs 2 + max_queue 2 = 4 sequences; n = 4 fits, n = 5 cannot all be admitted
        s, hd, b = post(st, "/v1/chat/completions", {"model": "qwen3", "messages": msgs, "n": 4})
        ok(s == 200 and len(json.loads(b)["choices"]) == 4, "n = 4 on max_seqs 2 + max_queue 2: all admitted", b[:200])
        s, hd, b = post(st, "/v1/chat/completions", {"model": "qwen3", "messages": msgs, "n": 5})
        ok(s == 429 and "retry-after" in hd and json.loads(b)["error"]["code"] == "server_busy",
           "n = 5 on max_seqs 2 + max_queue 2: 429 with Retry-After (n sequences count as n)", (s, b[:200]))
        s, _, b = post(st, "/v1/chat/completions", {"model": "qwen3", "messages": msgs, "n": 2})
        ok(s == 200, "after the refused n = 5 every slot is free again", b[:200])
        s, _, b = post(st, "/v1/chat/completions", {"model": "qwen3", "messages": msgs, "n": 9})
        ok(s == 400 and json.loads(b)["error"]["param"] == "n", "n = 9 (past FCGI_MAX_N = 8): 400 naming n", b[:200])
    finally:
        stop_checked(st, "n")


def check_fim():
    """Fill-in-the-middle on the Qwen3 vocabulary's own FIM tokens: /infill
    (llama-server's shape, whole and streamed) and /v1/completions with suffix;
    the prompt is PRE prefix SUF suffix MID as HF tokenizers count it."""
    open(os.path.join(os.environ["SPARKD_SCRIPT_DIR"], "fim.txt"), "w").write("return a + b<|endoftext|>")
    st = harness.Stack(ini_extra={"model": {"path": os.path.join(MODELS, "qwen3.gguf"), "id": "qwen3", "context": "4096",
                                            "chat_template_file": os.path.join(MODELS, "qwen3.jinja")}})
    try:
        st.start()
        pre, suf = "def add(a, b):\n    # [[script:fim]]\n    ", "\n\nprint(add(1, 2))\n"
        from tokenizers import Tokenizer
        import tok_ref
        mod, tj, _, _ = tok_ref.BYTE_LEVEL["qwen3"]
        want = len(Tokenizer.from_file(tok_ref.package_file(mod, *tj)).encode(
            "<|fim_prefix|>" + pre + "<|fim_suffix|>" + suf + "<|fim_middle|>", add_special_tokens=False).ids)
        s, _, b = post(st, "/infill", {"input_prefix": pre, "input_suffix": suf, "n_predict": 20})
        j = json.loads(b) if s == 200 else {}
        ok(s == 200 and j.get("content") == "return a + b" and j.get("stop") is True and j.get("tokens_evaluated") == want,
           "/infill: the middle, llama-server's shape, prompt PRE..SUF..MID (%d tokens)" % want, b[:300])
        s, _, b = post(st, "/infill", {"input_prefix": pre, "input_suffix": suf, "stream": True})
        evs = sse(b)
        ok(s == 200 and "".join(d["content"] for _, d in evs) == "return a + b" and evs[-1][1]["stop"] is True,
           "/infill streamed: content deltas, a last event with stop", evs[-2:])
        s, _, b = post(st, "/v1/completions", {"model": "qwen3", "prompt": pre, "suffix": suf, "max_tokens": 20})
        j = json.loads(b) if s == 200 else {}
        ok(s == 200 and j["choices"][0]["text"] == "return a + b" and j["usage"]["prompt_tokens"] == want,
           "/v1/completions suffix: the same middle", b[:300])
    finally:
        stop_checked(st, "fim")


def main():
    if not os.path.exists(os.path.join(BUILD, "tests", "sparkd_scripted")):
        ok(False, "build/tests/sparkd_scripted exists (make tests)")
        return exit_code()
    make_script_models.build(MODELS)
    harness.BIN = os.path.join(BUILD, "tests", "sparkd_scripted")
    for name, scripts in SCRIPTS.items():
        d = tempfile.mkdtemp(prefix="sparkd-scripts-")
        for k, v in scripts.items():
            open(os.path.join(d, k + ".txt"), "w").write(v)
        open(os.path.join(d, "fault.txt"), "w").write("#fail-after 3\nOnce upon a time there was a fault.")
        os.environ["SPARKD_SCRIPT_DIR"] = d
        harness.Stack.script_dir = d
        try:
            check_model(name, scripts)
            if name == "gpt-oss":
                check_effort()
            if name == "qwen3":
                check_misc()
                check_parallel()
                check_formats()
                check_fim()
                check_n()
        finally:
            shutil.rmtree(d, ignore_errors=True)
    return exit_code()


if __name__ == "__main__":
    sys.exit(main())
