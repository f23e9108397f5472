/* Fuzz target: job YAML (st_job_load with the station's driver registry, so every
 * driver's section and step options are parsed too). The job file's images are not loaded (that is
 * st_job_load_images, fuzzed through the image parser in station/core/fuzz_dfu_file.c). */
#include <stdint.h>
#include <stdlib.h>

#include "cmake/fuzz_memfile.h"
#include "jobs/job.h"
#include "station/drivers.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    st_job *job = NULL;
    st_err err;
    if (st_job_load(fuzz_memfile(data, size), st_drivers_registry(), &job, &err) == 0)
        st_job_free(job);
    else if (!err.msg[0])
        abort(); /* every refusal says why */
    return 0;
}
