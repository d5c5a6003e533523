"""langchain-openai: invoke, tools, with_structured_output."""
from langchain_openai import ChatOpenAI
from pydantic import BaseModel
from common import BASE, KEY, MODEL, check, done, is_weather

llm = ChatOpenAI(model=MODEL, base_url=BASE + "/v1", api_key=KEY, max_retries=0, timeout=60)


class Weather(BaseModel):
    """Weather in a city."""
    city: str
    temp_c: int


def invoke():
    r = llm.invoke("hi [[script:hello]]")
    return r.content.startswith("Hello"), r


def tools():
    def get_weather(city: str) -> str:
        """Current weather in a city."""
        return "5C"
    r = llm.bind_tools([get_weather]).invoke("weather [[script:call]]")
    return r.tool_calls and r.tool_calls[0]["name"] == "get_weather" and r.tool_calls[0]["args"] == {"city": "Oslo"}, r


def structured_tools():
    return is_weather(llm.with_structured_output(Weather, method="function_calling").invoke("weather [[script:forced_weather]]"))


def structured_schema():
    return is_weather(llm.with_structured_output(Weather).invoke("weather [[script:json_weather]]"))


for name, fn in [("invoke", invoke), ("tools", tools), ("with_structured_output (function_calling)", structured_tools),
                 ("with_structured_output (json_schema, the default)", structured_schema)]:
    check("langchain-openai", name, fn)
done()
