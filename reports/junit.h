/* JUnit XML from unit reports, for CI labs: one <testsuite> per unit report, one
 * <testcase> per step (failure with the step's error, skipped, measurements in
 * <system-out>). Text from reports (unit strings included) is escaped for XML. */
#ifndef STATION_REPORTS_JUNIT_H
#define STATION_REPORTS_JUNIT_H

#include <stddef.h>

#include "station/core/err.h"

/* Write path atomically from the reports at report_paths (each loaded and read);
 * suite_name names the whole run (the job). */
int st_junit_write(const char *path, const char *suite_name, const char *const *report_paths,
                   size_t n, st_err *err);

#endif
