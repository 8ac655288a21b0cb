# cmake -DNPM=<npm> -DDIR=<tests/crosscheck> -P npm_ci_if_missing.cmake
# Runs `npm ci` in DIR unless node_modules is already installed from the current
# package-lock.json. A file lock keeps two build directories' ctest runs from
# installing into the same source folder at once.
if(NOT NPM OR NOT DIR)
  message(FATAL_ERROR "usage: cmake -DNPM=<npm> -DDIR=<dir> -P npm_ci_if_missing.cmake")
endif()

file(LOCK "${DIR}/.npm-ci.lock" GUARD PROCESS TIMEOUT 600 RESULT_VARIABLE lock_result)
if(NOT lock_result EQUAL 0)
  message(FATAL_ERROR "crosscheck: could not lock ${DIR}/.npm-ci.lock: ${lock_result}")
endif()

set(installed "${DIR}/node_modules/.package-lock.json")
if(EXISTS "${installed}" AND EXISTS "${DIR}/node_modules/ethers/package.json"
   AND NOT "${DIR}/package-lock.json" IS_NEWER_THAN "${installed}")
  message(STATUS "crosscheck: node_modules up to date")
  return()
endif()

message(STATUS "crosscheck: npm ci in ${DIR}")
execute_process(
  COMMAND "${NPM}" ci --no-audit --no-fund
  WORKING_DIRECTORY "${DIR}"
  RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "crosscheck: npm ci failed (${rc}); the npm registry must be reachable the first time")
endif()
