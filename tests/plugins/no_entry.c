/* A shared library that is not a plugin: it lacks engine_plugin_negotiate. The loader must refuse it by name.
 */
__attribute__((visibility("default"))) int not_the_entry_symbol(int x) { return x + 1; }
