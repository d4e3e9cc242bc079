/* The C entry points the TensorRT Python bindings resolve from libnvinfer, libnvinfer_plugin and
 * libnvonnxparser, defined to return nothing. Built under each of those sonames, they let the bindings
 * import for introspection (stub generation) on machines without TensorRT. Never call into them. */
void *createInferBuilder_INTERNAL(void) { return 0; }
void *createInferRefitter_INTERNAL(void) { return 0; }
void *createInferRuntime_INTERNAL(void) { return 0; }
void *getBuilderPluginRegistry(void) { return 0; }
void *getPluginRegistry(void) { return 0; }
int initLibNvInferPlugins(void) { return 0; }
void *createNvOnnxParser_INTERNAL(void) { return 0; }
void *createNvOnnxParserRefitter_INTERNAL(void) { return 0; }
int getNvOnnxParserVersion(void) { return 0; }
