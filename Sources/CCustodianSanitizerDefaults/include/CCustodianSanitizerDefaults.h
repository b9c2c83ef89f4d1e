#ifndef CCUSTODIAN_SANITIZER_DEFAULTS_H
#define CCUSTODIAN_SANITIZER_DEFAULTS_H
/* Nothing to call: the object only carries the sanitizer runtime's default options for the custodian binary. */
int custodian_sanitizer_defaults_linked(void);
#endif
