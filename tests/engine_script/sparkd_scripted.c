/* sparkd_scripted — the sparkd CLI (appliance/main.c, compiled with main renamed)
 * with the scripted test engine linked in (engine_script.c), so `sparkd_scripted
 * serve -c INI` serves the real HTTP API, templates, tokenizers and parsers over
 * scripted outputs. A test binary only: build/tests/sparkd_scripted. */
int sparkd_cli_main(int argc, char **argv);

int main(int argc, char **argv) { return sparkd_cli_main(argc, argv); }
