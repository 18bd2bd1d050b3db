/*
 * pyllmring._core: module init, the fork generation, the module-level
 * functions. The types live in _core_engine.c, _core_channel.c,
 * _core_handle.c and _core_session.c; requests are built in
 * _core_request.c.
 */
#include "_core.h"

PyObject *core_engine_error; /* owner: the module (a reference kept for good) */
PyObject *core_json_dumps;   /* owner: the module (kept for good) */
volatile unsigned core_fork_gen;

static void on_fork_child(void)
{
	core_fork_gen++;
}

int core_check_fork(unsigned obj_gen)
{
	if (obj_gen == core_fork_gen)
		return 0;
	PyErr_SetString(PyExc_RuntimeError, "pyllmring: this client was created before fork(); "
	                                    "create a new one in the child process");
	return -1;
}

static int code_arg(PyObject *arg, int *out)
{
	long v = PyLong_AsLong(arg);
	if (v == -1 && PyErr_Occurred())
		return -1;
	*out = v < -1000000 || v > 1000000 ? -1000000 : (int)v;
	return 0;
}

static PyObject *core_error_name(PyObject *m, PyObject *arg)
{
	int c;
	return code_arg(arg, &c) < 0 ? NULL : PyUnicode_FromString(lr_error_name(c));
}

static PyObject *core_strerror(PyObject *m, PyObject *arg)
{
	int c;
	return code_arg(arg, &c) < 0 ? NULL : PyUnicode_FromString(lr_strerror(c));
}

static PyObject *core_version(PyObject *m, PyObject *unused)
{
	return PyUnicode_FromString(lr_version());
}

static PyObject *core_model_provider(PyObject *m, PyObject *arg)
{
	if (!PyUnicode_Check(arg)) {
		PyErr_SetString(PyExc_TypeError, "pyllmring: model_provider(model) wants a str");
		return NULL;
	}
	const char *model = PyUnicode_AsUTF8(arg);
	if (!model)
		return NULL;
	const char *sent = model;
	const char *provider = lr_model_provider(model, &sent);
	return Py_BuildValue("(ss)", provider ? provider : "openai", sent ? sent : model);
}

static PyMethodDef core_functions[] = {
	{"error_name", core_error_name, METH_O, "error_name(code) -> the stable snake_case name."},
	{"strerror", core_strerror, METH_O, "strerror(code) -> the human description."},
	{"version", core_version, METH_NOARGS, "The library version."},
	{"model_provider", core_model_provider, METH_O, "model_provider(model) -> (provider, model_sent)."},
	{"set_batch_hooks", (PyCFunction)(void (*)(void))core_set_batch_hooks,
	 METH_VARARGS | METH_KEYWORDS,
	 "set_batch_hooks(*, submit_python, from_handle, closed_error, chat_completion): what "
	 "BatchGroup calls back into Python for."},
	{"set_record_types", (PyCFunction)(void (*)(void))core_set_record_types,
	 METH_VARARGS | METH_KEYWORDS,
	 "set_record_types(*, message, choice, usage, details, delta, chunk_choice, tool_calls, "
	 "chunk_choices): the Python subclasses the C records make, and the hooks of the rare paths."},
	{"set_eager_hooks", (PyCFunction)(void (*)(void))core_set_eager_hooks,
	 METH_VARARGS | METH_KEYWORDS,
	 "set_eager_hooks(*, future_type, fail, chat, completion, embedding): create()'s eager "
	 "future type, fail(future, core, handle), and the response makers (handle, n, model)."},
	{"track", core_eager_track, METH_O,
	 "track(obj): a GC object left out of the cyclic GC (a resolved create() future) is "
	 "tracked again."},
	{"eager", (PyCFunction)(void (*)(void))core_eager, METH_FASTCALL,
	 "eager(future, handle, core, kind, n, model) -> future: the handle submitted with the "
	 "future as token resolves it with the response when its done event is handed out."},
	{NULL, NULL, 0, NULL},
};

static struct PyModuleDef core_module = {
	PyModuleDef_HEAD_INIT,
	.m_name = "pyllmring._core",
	.m_doc = "The llmring engine for Python (C over include/llmring.h).",
	.m_size = -1,
	.m_methods = core_functions,
};

static int add_type(PyObject *m, PyTypeObject *t, const char *name)
{
	if (PyType_Ready(t) < 0)
		return -1;
	Py_INCREF(t);
	if (PyModule_AddObject(m, name, (PyObject *)t) < 0) {
		Py_DECREF(t);
		return -1;
	}
	return 0;
}

static int add_error_codes(PyObject *m)
{
#define LR_XX_ADD(code, value, name, text) \
	if (PyModule_AddIntConstant(m, "LR_" #code, value) < 0) \
		return -1;
	LR_ERRNO_MAP(LR_XX_ADD)
#undef LR_XX_ADD
	return 0;
}

PyMODINIT_FUNC PyInit__core(void);
PyMODINIT_FUNC PyInit__core(void)
{
	static int atfork_done;
	if (!atfork_done) {
		if (pthread_atfork(NULL, NULL, on_fork_child) != 0)
			return PyErr_NoMemory();
		atfork_done = 1;
	}
	PyObject *m = PyModule_Create(&core_module);
	if (!m)
		return NULL;
	if (!core_json_dumps) {
		PyObject *json = PyImport_ImportModule("json");
		core_json_dumps = json ? PyObject_GetAttrString(json, "dumps") : NULL;
		Py_XDECREF(json);
	}
	if (!core_engine_error)
		core_engine_error = PyErr_NewExceptionWithDoc(
		        "pyllmring._core.EngineError",
		        "EngineError(code, message): the engine could not be created; .code is the "
		        "stable error name, .message says why.",
		        PyExc_Exception, NULL);
	if (!core_json_dumps || !core_engine_error ||
	    add_type(m, &CoreEngine_Type, "Engine") < 0 || add_type(m, &CoreChannel_Type, "Channel") < 0 ||
	    add_type(m, &CoreHandle_Type, "Handle") < 0 || add_type(m, &CoreResult_Type, "Result") < 0 ||
	    add_type(m, &CoreSession_Type, "Session") < 0 ||
	    core_records_init(m) < 0 || core_group_init(m) < 0 || core_eager_init(m) < 0 || core_stream_init(m) < 0 || add_error_codes(m) < 0 || PyModule_AddStringConstant(m, "VERSION", LR_VERSION_STRING) < 0) {
		Py_DECREF(m);
		return NULL;
	}
	Py_INCREF(core_engine_error);
	if (PyModule_AddObject(m, "EngineError", core_engine_error) < 0) {
		Py_DECREF(core_engine_error);
		Py_DECREF(m);
		return NULL;
	}
	return m;
}
