/* The fleet database's migrations, compiled in from reports/ship/migrations/NNNN_*.sql
 * (embed_sql.cmake): applied in version order, each once, by st_ship_migrate. */
#ifndef STATION_REPORTS_SHIP_MIGRATIONS_H
#define STATION_REPORTS_SHIP_MIGRATIONS_H

typedef struct st_migration {
    int version;      /* NNNN of the file name */
    const char *name; /* file name */
    const char *sql;  /* its text */
} st_migration;

extern const st_migration st_migrations[];
extern const unsigned st_nmigrations;

#endif
