"""openai-agents: its default Responses model runs a tool loop against sparkd."""
import openai
from agents import Agent, Runner, function_tool, set_default_openai_client, set_tracing_disabled
from common import BASE, CERT, FINAL, KEY, MODEL, check, done

mk = getattr(openai, "DefaultAsyncHttpx2Client", None) or openai.DefaultAsyncHttpxClient
set_default_openai_client(openai.AsyncOpenAI(base_url=BASE + "/v1", api_key=KEY, max_retries=0,
                                             http_client=mk(verify=CERT, timeout=60)), use_for_tracing=False)
set_tracing_disabled(True)
calls = []


@function_tool
def get_weather(city: str) -> str:
    """Current weather in a city."""
    calls.append(city)
    return "5C and sunny [[script:final]]"


def loop():
    agent = Agent(name="weather", instructions="Answer with the weather.", model=MODEL, tools=[get_weather])
    res = Runner.run_sync(agent, "What is the weather in Oslo? [[script:call]]")
    return calls == ["Oslo"] and res.final_output.strip() == FINAL, (calls, res.final_output)


check("openai-agents", "default Responses model, tool loop", loop)
done()
