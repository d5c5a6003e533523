"""pydantic-ai: an agent with a structured output type in its default output mode (a tool call)."""
from pydantic import BaseModel
from pydantic_ai import Agent
from pydantic_ai.models.openai import OpenAIChatModel
from pydantic_ai.providers.openai import OpenAIProvider
from common import BASE, KEY, MODEL, check, done, is_weather


class Weather(BaseModel):
    city: str
    temp_c: int


model = OpenAIChatModel(MODEL, provider=OpenAIProvider(base_url=BASE + "/v1", api_key=KEY))


def text():
    return Agent(model).run_sync("hi [[script:hello]]").output.startswith("Hello")


def default_output():
    r = Agent(model, output_type=Weather).run_sync("weather in Oslo [[script:forced_weather]]")
    return is_weather(r.output), r.output


for name, fn in [("text", text), ("default output mode (structured)", default_output)]:
    check("pydantic-ai", name, fn)
done()
