# sparkd — build rules. build.sh is the entry point; it calls this.
#   make                 build/sparkd (CPU; adds the CUDA unit when CUDA=1)
#   make SAN=1 OUT=build-san   the same under ASan + UBSan (used by tests)
#   make tests           unit-test binaries under $(OUT)/tests/
#   make fuzz            libFuzzer targets under $(OUT)/fuzz/ (needs clang)
#   make static          $(OUT)/sparkd-static: the CPU build linked fully statically against
#                        musl (BearSSL built by etc/static/musl-deps.sh from Debian's
#                        source packages into $(OUT)/musl-deps)
OUT    ?= build
CC     ?= cc
CUDA   ?= 0
NVCC   ?= nvcc
SAN    ?= 0

# appliance/ is layered (base, format, model, engine, serve, text); every folder is on the
# quote-include path, so a header is included by its name alone.
APP_DIRS = $(shell find appliance -type d)
INC = $(addprefix -iquote ,$(APP_DIRS)) -iquote fcgi -iquote kernels
CFLAGS_BASE = -std=c11 -D_GNU_SOURCE -O2 -g -Wall -Wextra -Werror -pthread $(INC)
ARCHFLAGS  ?= -march=x86-64-v3 -mtune=native
ifeq ($(shell uname -m),aarch64)
ARCHFLAGS  = -mcpu=native
endif
ifeq ($(SAN),1)
CFLAGS_BASE += -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer
LDSAN = -fsanitize=address,undefined
endif
CFLAGS ?= $(CFLAGS_BASE) $(ARCHFLAGS)
# SHA-256 (Debian: libbearssl-dev) linked statically (Debian ships the .a): the binary
# then needs only glibc (and, for the CUDA build, the driver's libcuda.so.1, which
# cudart_static dlopens). JSON, the INI reader and FastCGI are the project's own
# (appliance/text/jsonv.c reads JSON, fcgi/jw.c writes it; base/config.c; fcgi/wire.c).
LDLIBS = -Wl,-Bstatic -lbearssl -Wl,-Bdynamic -lm -pthread $(LDSAN)
# Tests only: jansson (libjansson-dev) re-reads what our JSON writer wrote, as
# a reader nobody here wrote.
TEST_LDLIBS = -ljansson

APP_SRC  = $(filter-out appliance/main.c,$(foreach d,$(APP_DIRS),$(wildcard $(d)/*.c)))
APP_HDR  = $(foreach d,$(APP_DIRS),$(wildcard $(d)/*.h))
APP_OBJ  = $(APP_SRC:%.c=$(OUT)/obj/%.o)
MAIN_OBJ = $(OUT)/obj/appliance/main.o
# fcgi/: the HTTP API; an archive so test programs pull in only what they use
FCGI_SRC = $(wildcard fcgi/*.c)
FCGI_OBJ = $(FCGI_SRC:%.c=$(OUT)/obj/%.o)
FCGI_LIB = $(OUT)/libsparkd_fcgi.a

ifeq ($(CUDA),1)
CUDA_SRC = $(wildcard kernels/*.cu)
CUDA_OBJ = $(CUDA_SRC:%.cu=$(OUT)/obj/%.o)
NVFLAGS  = -O2 -std=c++17 -DSPARKD_CUDA=1 $(addprefix -I,$(APP_DIRS)) -Ikernels \
           -gencode arch=compute_90a,code=sm_90a -gencode arch=compute_121a,code=sm_121a \
           -Xcompiler -Wall,-Wextra,-Werror
CUDA_HOME ?= $(patsubst %/bin/nvcc,%,$(shell command -v $(NVCC)))
CUDA_LIBS = -L$(CUDA_HOME)/lib64 -L$(CUDA_HOME)/targets/x86_64-linux/lib -L$(CUDA_HOME)/targets/sbsa-linux/lib \
            -lcudart_static -ldl -lrt -Wl,-Bstatic -lstdc++ -Wl,-Bdynamic -static-libgcc
CFLAGS  += -DSPARKD_CUDA=1
else
CUDA_OBJ =
CUDA_LIBS =
endif

TEST_SRC = $(wildcard tests/unit/test_*.c)
TEST_BIN = $(TEST_SRC:tests/unit/%.c=$(OUT)/tests/%)
# tool_*.c: helper programs that Python tests drive (built, not run by run.sh)
TOOL_SRC = $(wildcard tests/unit/tool_*.c)
TEST_BIN += $(TOOL_SRC:tests/unit/%.c=$(OUT)/tests/%)

all: $(OUT)/sparkd

$(OUT)/sparkd: $(MAIN_OBJ) $(APP_OBJ) $(FCGI_OBJ) $(CUDA_OBJ)
	$(CC) $(CFLAGS) -o $@ $^ $(CUDA_LIBS) $(LDLIBS)

$(FCGI_LIB): $(FCGI_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(OUT)/obj/%.o: %.c $(APP_HDR) $(wildcard kernels/*.h fcgi/*.h)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c -o $@ $<

$(OUT)/obj/%.o: %.cu $(wildcard kernels/*.h kernels/*.cuh)
	@mkdir -p $(dir $@)
	$(NVCC) $(NVFLAGS) -c -o $@ $<

# the sparkd CLI over the scripted test engine (tests/engine_script): never shipped
SCRIPTED = $(OUT)/tests/sparkd_scripted
TEST_BIN += $(SCRIPTED)

tests: $(TEST_BIN)

$(OUT)/obj/tests/main_scripted.o: appliance/main.c $(APP_HDR) $(wildcard kernels/*.h fcgi/*.h)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -Dmain=sparkd_cli_main -c -o $@ $<

$(SCRIPTED): tests/engine_script/sparkd_scripted.c tests/engine_script/engine_script.c $(OUT)/obj/tests/main_scripted.o \
             $(APP_OBJ) $(FCGI_LIB) $(CUDA_OBJ)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -o $@ tests/engine_script/sparkd_scripted.c tests/engine_script/engine_script.c \
	    $(OUT)/obj/tests/main_scripted.o $(APP_OBJ) $(FCGI_LIB) $(CUDA_OBJ) $(CUDA_LIBS) $(LDLIBS)

$(OUT)/tests/%: tests/unit/%.c $(APP_OBJ) $(FCGI_LIB) $(wildcard tests/unit/*.h)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -iquote tests/unit -o $@ $< $(APP_OBJ) $(FCGI_LIB) $(LDLIBS) $(TEST_LDLIBS)

# tool_logits runs the engine `sparkd run` would (SPARKD_DEVICE): with the CUDA unit in CUDA
# builds, so the golden references can be checked on the GPU (tests/gpu/run.sh)
ifeq ($(CUDA),1)
$(OUT)/tests/tool_logits: tests/unit/tool_logits.c $(APP_OBJ) $(FCGI_LIB) $(CUDA_OBJ) $(wildcard tests/unit/*.h)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -iquote tests/unit -o $@ $< $(APP_OBJ) $(CUDA_OBJ) $(FCGI_LIB) $(CUDA_LIBS) $(LDLIBS) $(TEST_LDLIBS)
endif

FUZZ_SRC = $(wildcard tests/fuzz/fuzz_*.c)
FUZZ_BIN = $(FUZZ_SRC:tests/fuzz/%.c=$(OUT)/fuzz/%)
fuzz: $(FUZZ_BIN)
$(OUT)/fuzz/%: tests/fuzz/%.c $(APP_SRC) $(FCGI_SRC)
	@mkdir -p $(dir $@)
	clang -std=c11 -D_GNU_SOURCE -O1 -g $(INC) -fsanitize=fuzzer,address,undefined -o $@ $< \
	    $(APP_SRC) $(FCGI_SRC) -ljansson -lbearssl -lm -pthread

# The fully static CPU binary: the same sources under musl-gcc, no CUDA (libcuda.so.1
# is glibc-linked and a static musl binary cannot dlopen it; firmware-notes/ section 5).
# -z stack-size: musl sizes thread stacks from PT_GNU_STACK (default 128 KiB); 8 MiB
# gives worker threads the stack they have under glibc.
MUSL_CC   ?= musl-gcc
MUSL_DEPS ?= $(OUT)/musl-deps
STATIC_OBJ = $(patsubst %.c,$(OUT)/static-obj/%.o,appliance/main.c $(APP_SRC) $(FCGI_SRC))
static: $(OUT)/sparkd-static
$(MUSL_DEPS)/.stamp: etc/static/musl-deps.sh
	etc/static/musl-deps.sh $(MUSL_DEPS)
$(OUT)/static-obj/%.o: %.c $(APP_HDR) $(wildcard kernels/*.h fcgi/*.h) $(MUSL_DEPS)/.stamp
	@mkdir -p $(dir $@)
	$(MUSL_CC) $(CFLAGS_BASE) $(ARCHFLAGS) -I$(MUSL_DEPS)/include -c -o $@ $<
$(OUT)/sparkd-static: $(STATIC_OBJ)
	$(MUSL_CC) -static -Wl,-z,stack-size=8388608 -o $@ $^ -L$(MUSL_DEPS)/lib -lbearssl -lm -pthread

clean:
	rm -rf $(OUT)

.PHONY: all tests fuzz static clean
