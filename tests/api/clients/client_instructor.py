"""instructor: a response model in TOOLS mode (a forced, named tool call) and JSON_SCHEMA mode."""
import instructor
import openai
from pydantic import BaseModel
from common import BASE, KEY, MODEL, check, done, is_weather


class Weather(BaseModel):
    city: str
    temp_c: int


def mode(m, script):
    cl = instructor.from_openai(openai.OpenAI(base_url=BASE + "/v1", api_key=KEY, max_retries=0), mode=m)
    return is_weather(cl.chat.completions.create(model=MODEL, response_model=Weather, max_retries=0,
                                                 messages=[{"role": "user", "content": "weather [[script:%s]]" % script}]))


check("instructor", "TOOLS mode", lambda: mode(instructor.Mode.TOOLS, "forced_weather"))
check("instructor", "JSON_SCHEMA mode", lambda: mode(instructor.Mode.JSON_SCHEMA, "json_weather"))
done()
